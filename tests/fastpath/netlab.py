"""Network namespace plumbing shared by the I/O tests and the pump benchmarks.

Everything here acts on a namespace the caller made (``ip netns add``) and deletes; the process
enters it with setns(2) only for the time it takes to create fds there, then comes back, so
nothing in the root namespace is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


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


def tun_open(name: str, flags: int) -> int:
    """A non-blocking TUN (``IFF_TUN``) or TAP (``IFF_TAP``) fd, without packet information."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags | IFF_NO_PI))
    return fd


def a6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def a4(text: str) -> int:
    return int(struct.unpack("!I", socket.inet_aton(text))[0])
