"""Network namespace plumbing shared by the I/O tests and the pump benchmarks.

Everything here acts on a namespace the caller made (``ip netns add``) and deletes; the process
enters it with setns(2) only for the time it takes to create fds there, then comes back, so
nothing in the root namespace is touched.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess

from netlmm_lab.netns import netns

__all__ = ["netns"]  # the I/O tests and pump benchmarks take it from here

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def tun_open(name: str, flags: int) -> int:
    """A non-blocking TUN (``IFF_TUN``) or TAP (``IFF_TAP``) fd, without packet information."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags | IFF_NO_PI))
    return fd


def a6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def a4(text: str) -> int:
    return int(struct.unpack("!I", socket.inet_aton(text))[0])
