"""A lab in a process of its own, for the SIGTERM teardown test of
``tests/netns/test_lab_topology.py``: builds a :class:`~netlmm_lab.topology.Lab`, starts a
sleeper in it, prints the lab's prefix and waits (at most 60 s) for the signal that must tear
it all down."""

from __future__ import annotations

import threading

from netlmm_lab.topology import Lab


def main() -> None:
    with Lab() as lab:
        lab.popen("cn", ["sleep", "60"])
        print(lab.prefix, flush=True)
        threading.Event().wait(60.0)  # the SIGTERM handler unwinds from here


if __name__ == "__main__":
    main()
