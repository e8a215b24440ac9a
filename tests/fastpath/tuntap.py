"""TUN/TAP fds and address packing shared by the I/O tests and the pump benchmarks.

The namespaces these fds live in are the lab's (:class:`netlmm_lab.topology.Lab` subclasses,
entered with :func:`netlmm_lab.netns.enter` only to open the fds); nothing here touches the root
namespace.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def tun_open(name: str, flags: int) -> int:
    """A non-blocking TUN (``IFF_TUN``) or TAP (``IFF_TAP``) fd, without packet information."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags | IFF_NO_PI))
    return fd


def a6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def a4(text: str) -> int:
    return int(struct.unpack("!I", socket.inet_aton(text))[0])
