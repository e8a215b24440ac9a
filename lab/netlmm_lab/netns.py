"""Enter one of the lab's network namespaces from this thread, for the sockets made inside.

``ip netns exec`` runs a whole process elsewhere; the lab's packet tools instead make a socket
in a namespace and use it from here (a socket keeps the namespace it was made in).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace ``name`` (fds made there stay there)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:  # pragma: no cover - cannot go home
                os._exit(70)
    finally:
        os.close(target)
        os.close(home)
