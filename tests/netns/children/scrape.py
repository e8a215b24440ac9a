"""The Prometheus endpoint seen from inside a node's namespace: ``python -m
tests.netns.children.scrape PORT`` prints what ``http://127.0.0.1:PORT/metrics`` serves."""

from __future__ import annotations

import sys
import urllib.request


def main(argv: list[str]) -> None:
    url = f"http://127.0.0.1:{int(argv[0])}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        sys.stdout.write(response.read().decode())


if __name__ == "__main__":
    main(sys.argv[1:])
