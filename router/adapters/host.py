"""Facts about the host a node starts on, read without netlink (safe on the loop's thread), and
the per-node lock.

* :class:`NodeLock`: an exclusive ``flock`` on ``<state_dir>/lock`` holding the owner's pid;
  taken before anything touches the kernel, so a second ``netlmm run`` of the same node
  refuses before its start-up sweep can delete the running node's devices.
* :func:`interface_index`, :func:`ipv4_address`: an interface by name (``SIOCGIFINDEX``) and
  its first IPv4 address (``SIOCGIFADDR``), in the namespace the process runs in.
* :func:`ipv6_holders`: the interfaces that carry an IPv6 address, with its DAD state
  (``/proc/net/if_inet6``, which is per network namespace).
* :func:`route_mtu`: the MTU of the route (and path-MTU cache) towards an IPv6 peer, from a
  connected UDP socket's ``IPV6_MTU``: what a tunnelled packet must fit.
* :func:`raw_allowed`: whether this process may open raw sockets (``CAP_NET_RAW``).
* :func:`open_route_changes`, :func:`drain`: a netlink socket that becomes readable when a link
  or an IPv6 route of this namespace changes (``RTMGRP_LINK | RTMGRP_IPV6_ROUTE``); nothing is
  parsed, the owner re-reads what it watches.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

_SIOCGIFADDR = 0x8915
_IFREQ = struct.Struct("16sH2s4s8s")
_IPV6_MTU = getattr(socket, "IPV6_MTU", 24)
_IFA_F_DADFAILED = 0x08
_IFA_F_TENTATIVE = 0x40
LOCK_NAME = "lock"
_RTMGRP_LINK = 0x1
_RTMGRP_IPV6_ROUTE = 0x400


class AlreadyRunning(Exception):
    """The lock is held by another process (``pid``; 0 when it could not be read)."""

    def __init__(self, path: Path, pid: int) -> None:
        super().__init__(f"{path} is locked by pid {pid}")
        self.path = path
        self.pid = pid


class NodeLock:
    """``flock(LOCK_EX | LOCK_NB)`` on ``<state_dir>/lock`` (mode 0600), our pid written in it.

    The kernel drops the lock when the process ends however it ends (SIGKILL, crash), so a
    stale file never blocks a start; the file itself stays (removing it would race a
    starter that opened it already).
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`AlreadyRunning`; ``OSError`` if the file cannot be
        opened (a state directory we may not write)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.pread(fd, 32, 0)
            os.close(fd)
            try:
                pid = int(raw.decode("ascii", "replace").strip() or 0)
            except ValueError:
                pid = 0
            raise AlreadyRunning(self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fchmod(fd, 0o600)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def interface_index(ifname: str) -> int | None:
    """The interface's index in this namespace, or None where there is no such interface."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def ipv4_address(ifname: str) -> IPv4Address | None:
    """The interface's (first) IPv4 address, None when it has none (or does not exist)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ.pack(ifname.encode()[:15], 0, b"", b"", b"")
        try:
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
        except OSError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENXIO):
                return None
            raise
    return IPv4Address(_IFREQ.unpack(answer)[3])


@dataclass(frozen=True, slots=True)
class IPv6Holder:
    ifname: str
    tentative: bool
    dad_failed: bool


def ipv6_holders(address: IPv6Address, proc: Path = Path("/proc/net/if_inet6")) -> list[IPv6Holder]:
    """The interfaces of this namespace that carry ``address`` (normally zero or one)."""
    out = []
    try:
        text = proc.read_text()
    except FileNotFoundError:  # IPv6 disabled in this kernel
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        try:
            held = IPv6Address(bytes.fromhex(parts[0]))
            flags = int(parts[4], 16)
        except ValueError:
            continue
        if held == address:
            out.append(
                IPv6Holder(parts[5], bool(flags & _IFA_F_TENTATIVE), bool(flags & _IFA_F_DADFAILED))
            )
    return out


def route_mtu(peer: IPv6Address, source: IPv6Address | None = None) -> int | None:
    """The MTU the kernel would use towards ``peer`` (route MTU, path-MTU cache, device MTU),
    None when there is no route."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        try:
            if source is not None:
                sock.bind((str(source), 0))
            sock.connect((str(peer), 9))  # discard; nothing is sent
            return int(sock.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU))
        except OSError:
            return None


def raw_allowed() -> bool:
    """True when a raw IPv6 socket can be opened (root or ``CAP_NET_RAW``)."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        return False
    except OSError:
        return True  # another reason (no IPv6): the real open will say it
    sock.close()
    return True


def open_route_changes() -> socket.socket:
    """A non-blocking NETLINK_ROUTE socket subscribed to link and IPv6 route changes."""
    sock = socket.socket(
        socket.AF_NETLINK,
        socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
        socket.NETLINK_ROUTE,
    )
    try:
        sock.bind((0, _RTMGRP_LINK | _RTMGRP_IPV6_ROUTE))
    except OSError:
        sock.close()
        raise
    return sock


def drain(sock: socket.socket, limit: int = 1024) -> int:
    """Read what is queued (at most ``limit`` datagrams): how many were read."""
    count = 0
    while count < limit:
        try:
            sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # ENOBUFS: messages lost, which is a change too
            count += 1
            break
        count += 1
    return count
