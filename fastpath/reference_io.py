"""Batches in the reference twin (the compiled twin's ``io.pxi``): in memory (:class:`Batch`),
and on fds, where :func:`pump` is the one loop behind every engine's pump calls.

A pump reads from a :class:`Source` (a TAP/TUN device, or a raw protocol-4 socket), hands each
packet to the engine's single-packet call and what it forwards to a :class:`Sink` (a raw
IPPROTO_RAW socket, or TAP/TUN devices, through the coalescer when it is on).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from fastpath.common import (
    IO_BATCH,
    IO_BUF,
    IP6_LEN,
    MAX_STRIDE,
    READ_MAX,
    REHASH_PER_BATCH,
    VNET_READ_MAX,
    Direction,
    Punt,
    Reason,
    Result,
    Verdict,
)
from fastpath.reference_gso import Coalescer, segment
from fastpath.reference_packet import Buf

if TYPE_CHECKING:
    from fastpath.reference_table import HoaTable


class Batch:
    """Up to ``size`` packets in fixed ``stride`` slots, with per-slot address, link and reason.

    An input batch carries what arrived (address = outer IPv6 source for tunnel input); an output
    batch receives, slot for slot, the output bytes, the reason and the link of each input.
    """

    def __init__(self, size: int = 64, stride: int = IO_BUF) -> None:
        if not 0 < size <= 4096 or not 64 <= stride <= MAX_STRIDE:
            raise ValueError("size must be 1..4096 and stride 64..65535")
        self._size = size
        self._stride = stride
        self._data: list[bytes] = [b""] * size
        self._addr: list[bytes] = [bytes(16)] * size
        self._link = [0] * size
        self._reason = [0] * size
        self._count = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def stride(self) -> int:
        return self._stride

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._count = 0

    def append(self, data: Buf, addr: Buf = bytes(16), link: int = 0) -> None:
        if self._count >= self._size or len(data) > self._stride or len(addr) != 16:
            raise ValueError("batch full, packet longer than the stride, or addr not 16 bytes")
        i = self._count
        self._data[i] = bytes(data)
        self._addr[i] = bytes(addr)
        self._link[i] = link
        self._reason[i] = 0
        self._count += 1

    def data(self, i: int) -> bytes:
        self._check(i)
        return self._data[i]

    def addr(self, i: int) -> bytes:
        self._check(i)
        return self._addr[i]

    def link(self, i: int) -> int:
        self._check(i)
        return self._link[i]

    def reason(self, i: int) -> int:
        self._check(i)
        return self._reason[i]

    def _check(self, i: int) -> None:
        if not 0 <= i < self._count:
            raise IndexError("batch slot out of range")

    def _set(self, i: int, data: bytes, link: int, reason: int) -> None:
        self._data[i] = data
        self._link[i] = link
        self._reason[i] = reason


def run_batch(
    table: HoaTable, inp: Batch, out: Batch, step: Callable[[int, bytearray], Result]
) -> int:
    """Run ``step(i, scratch) -> Result`` over an input batch into the output batch."""
    if out.size < len(inp) or out.stride < inp.stride + IP6_LEN:
        raise ValueError("output batch must hold as many slots, each 40 bytes longer")
    table._migrate(REHASH_PER_BATCH)
    scratch = bytearray(out.stride)
    forwarded = 0
    for i in range(len(inp)):
        v, reason, n, link = step(i, scratch)
        out._set(i, bytes(scratch[:n]) if v == Verdict.FORWARD else b"", link, reason)
        forwarded += v == Verdict.FORWARD
    out._count = len(inp)
    return forwarded


# ---- whole datagrams with their peer: the MH socket's batches ----


class MessageIO:
    """Whole datagrams with their IPv6 peer on an AF_INET6 raw socket this does not own (the
    MH socket): the compiled twin receives up to :data:`IO_BATCH` in one recvmmsg and sends in
    sendmmsg batches of as many; this twin does one recvmsg or sendto a datagram.

    :meth:`recv` returns ``(messages, truncated, error)``: ``[(data, source)]`` with the
    source's 16 bytes, how many were longer than :data:`IO_BUF` (dropped), and the errno of a
    failed receive (0 when the socket was drained or the limit reached). :meth:`send` takes
    ``[(data, destination)]`` (16 bytes each, port 0: a raw socket), sends them in order, and
    returns ``[(index, errno)]`` of those that failed; the others still go. A destination that
    is not 16 bytes (our bug) refuses the whole list before anything is sent."""

    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise ValueError("fd must be an open socket")
        self._sock = socket.socket(fileno=os.dup(fd))

    def recv(self, limit: int = IO_BATCH) -> tuple[list[tuple[bytes, bytes]], int, int]:
        messages: list[tuple[bytes, bytes]] = []
        truncated = 0
        for _ in range(min(max(limit, 0), IO_BATCH)):
            try:
                data, _, flags, addr = self._sock.recvmsg(IO_BUF, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if messages or truncated:  # as recvmmsg: what came first is returned
                    break
                return messages, 0, exc.errno or errno.EIO
            if flags & socket.MSG_TRUNC:
                truncated += 1
                continue
            source = socket.inet_pton(socket.AF_INET6, addr[0].split("%", 1)[0])
            messages.append((data, source))
        return messages, truncated, 0

    def send(self, messages: list[tuple[bytes, bytes]]) -> list[tuple[int, int]]:
        if any(type(dst) is not bytes or len(dst) != 16 for _, dst in messages):
            raise ValueError("a destination is 16 bytes (an IPv6 address, packed)")
        failed: list[tuple[int, int]] = []
        for i, (data, dst) in enumerate(messages):
            try:
                self._sock.sendto(data, (socket.inet_ntop(socket.AF_INET6, dst), 0))
            except OSError as exc:
                failed.append((i, exc.errno or errno.EIO))
        return failed

    def close(self) -> None:
        self._sock.close()


# ---- batches on fds ----

# What a pump hands each packet to: (source, packet, out) -> the engine's Result. ``source`` is
# what the packet came from, as a Punt carries it: the source MAC of a frame from a TAP, the
# outer IPv6 source of tunnel input, b"" for a packet from the TUN.
Step = Callable[[bytes, bytes, bytearray], Result]


class Source(Protocol):
    def read(self) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        """One read: None when there is nothing to read, else (reason, [(source, packet)]); a
        reason other than FORWARDED is counted once for the read."""

    def close(self) -> None: ...


class Sink(Protocol):
    def put(self, out: bytearray, n: int, link: int) -> tuple[int, int]:
        """Send ``out[:n]`` (leaving by access link ``link``): (packets sent, failed)."""

    def finish(self) -> tuple[int, int]:
        """The end of the pump call: whatever is still held back is sent."""

    def close(self) -> None: ...


class Counting(Protocol):
    """What :func:`pump` needs of an engine (``reference_engines._Engine``): its table and
    its per-direction counters (a protocol, so the engines can import this module)."""

    table: HoaTable

    def _end(self, d: Direction, reason: int) -> object: ...

    def _tx_errors(self, d: Direction, n: int) -> None: ...


def pump(
    engine: Counting,
    d: Direction,
    source: Source,
    step: Step,
    sink: Sink,
    punt_link: int,
    budget: int,
) -> tuple[int, int, list[Punt]]:
    """Up to ``budget`` reads from ``source``; each packet through ``step``, the forwarded ones
    to ``sink``, the punted ones kept with their context (``punt_link``: the access link they
    came in on, else -1). What a read cannot deliver whole and what cannot be sent (tx_errors)
    is counted in direction ``d``. Returns (reads, packets sent, punts)."""
    punts: list[Punt] = []
    engine.table._migrate(REHASH_PER_BATCH)
    out = bytearray(IO_BUF)
    rx = sent = 0
    try:
        while rx < budget:
            got = source.read()
            if got is None:
                break
            rx += 1
            reason, packets = got
            if reason:
                engine._end(d, reason)
            for src, pkt in packets:
                v, why, n, link = step(src, pkt, out)
                if v == Verdict.PUNT:
                    punts.append(Punt(why, punt_link, src, pkt))
                elif v == Verdict.FORWARD:
                    ok, failed = sink.put(out, n, link)
                    sent += ok
                    if failed:
                        engine._tx_errors(d, failed)
        ok, failed = sink.finish()
        sent += ok
        if failed:
            engine._tx_errors(d, failed)
    finally:
        source.close()
        sink.close()
    return rx, sent, punts


class DeviceSource:
    """Reads from a TAP (``l2len`` 14) or TUN (0). With the virtio-net header (``vnet``), a
    read may hold a super-packet: :func:`segment` gives its packets, or BAD_GSO and none."""

    def __init__(self, fd: int, l2len: int, vnet: bool) -> None:
        self._fd, self._l2len, self._vnet = fd, l2len, vnet

    def read(self) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        got = read_fd(self._fd, VNET_READ_MAX if self._vnet else READ_MAX)
        if got is None:
            return None
        if not self._vnet:
            return Reason.FORWARDED, [(got[6:12] if self._l2len else b"", got)]
        reason, packets = segment(got, self._l2len)
        return reason, [(p[6:12] if self._l2len else b"", p) for p in packets]

    def close(self) -> None:
        pass


class SocketSource:
    """Receives from a raw protocol-4 socket: the kernel strips the outer header and gives its
    source address; a packet longer than IO_BUF is TRUNCATED."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)

    def read(self) -> tuple[int, list[tuple[bytes, bytes]]] | None:
        try:
            data, _, flags, addr = self._sock.recvmsg(IO_BUF, 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        if flags & socket.MSG_TRUNC:
            return Reason.TRUNCATED, []
        return Reason.FORWARDED, [(socket.inet_pton(socket.AF_INET6, addr[0].split("%")[0]), data)]

    def close(self) -> None:
        self._sock.detach()


class RawSink:
    """Header-included IPv6 sends on an IPPROTO_RAW socket, to the outer destination."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)

    def put(self, out: bytearray, n: int, link: int) -> tuple[int, int]:
        try:
            self._sock.sendto(bytes(out[:n]), (socket.inet_ntop(socket.AF_INET6, out[24:40]), 0))
        except OSError:
            return 0, 1
        return 1, 0

    def finish(self) -> tuple[int, int]:
        return 0, 0

    def close(self) -> None:
        self._sock.detach()


class DeviceSink:
    """Writes to one TUN (``fds`` an int) or to the TAP of each access link (a sequence),
    after a virtio-net header when the devices carry one; through a :class:`Coalescer` when
    one is given (a packet for a link that is not there fails)."""

    def __init__(self, fds: int | Sequence[int], vnet: bytes, co: Coalescer | None) -> None:
        self._fds, self._vnet, self._co = fds, vnet, co

    def put(self, out: bytearray, n: int, link: int) -> tuple[int, int]:
        if isinstance(self._fds, int):
            fd = self._fds
        elif 0 <= link < len(self._fds):
            fd = self._fds[link]
        else:
            return 0, 1
        if self._co is not None:
            return _writes(self._co.add(fd, out[:n]))
        return (1, 0) if write_fd(fd, self._vnet + bytes(out[:n])) else (0, 1)

    def finish(self) -> tuple[int, int]:
        if self._co is None or not self._co.count:
            return 0, 0
        return _writes([self._co.finish()])

    def close(self) -> None:
        pass


def _writes(writes: list[tuple[int, bytes, int]]) -> tuple[int, int]:
    """Do the writes of a :class:`Coalescer`: (packets written, packets in failed writes)."""
    sent = failed = 0
    for fd, data, k in writes:
        if write_fd(fd, data):
            sent += k
        else:
            failed += k
    return sent, failed


def read_fd(fd: int, size: int = READ_MAX) -> bytes | None:
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError as e:
        if e.errno == errno.EINTR:
            return None
        raise


def write_fd(fd: int, data: bytes) -> bool:
    try:
        return os.write(fd, data) == len(data)
    except OSError:
        return False
