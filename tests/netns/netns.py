"""Network namespaces for tests: created with a run-unique name, always deleted.

Only namespaces made here are touched; nothing in the root namespace changes.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_counter = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def namespace(tag: str) -> Iterator[str]:
    """A fresh namespace ``nlt<pid>-<n><tag>`` with ``lo`` up; deleted on exit, even on failure."""
    name = f"nlt{os.getpid()}-{next(_counter)}{tag}"[:32]
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


def run_python(ns: str, code: str, *args: str, timeout: float = 60) -> str:
    """Run ``python -c code args`` inside namespace ``ns``; return stdout (raise on failure)."""
    result = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"in {ns}: exit {result.returncode}\n{result.stderr}")
    return result.stdout
