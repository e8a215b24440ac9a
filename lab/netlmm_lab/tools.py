"""Measurement tools for the lab, run inside its namespaces with this same interpreter.

Each tool is a subcommand of ``python -m netlmm_lab.tools`` (so it runs in any namespace through
:meth:`Lab.popen`) and a small class or function here that starts it and parses its JSON:

- :class:`UdpStream`: a probe every ``interval`` (5 ms) from the MS, echoed by the CN; reports
  loss, duplicates, reordering, the longest gap between echoes (the handover interruption) and
  echoes per 10 ms (for a plot).
- :func:`tcp_transfer`: N bytes or T seconds client -> server; throughput.
- :class:`TcpSession`: a connection opened before a handover that keeps exchanging small
  messages; did it survive (no reset, every message echoed in order)?
- :func:`ping`: ``ping -c N -W 1`` parsed into loss and RTTs.
- :class:`Sniffer`: counts frames on an interface (packet socket), e.g. the MS's ARP on acc0.

Every tool is bounded in packets and seconds; servers serve one client and exit.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from netlmm_lab.topology import CN_ADDRESS, Lab, LabError

PROBE = struct.Struct("!4sIQ")  # magic, sequence, sender's monotonic ns
PROBE_MAGIC = b"NLPS"
CHAT = struct.Struct("!IQ4x")  # sequence, sender's monotonic ns: 16 bytes
ETH_P_ALL = 0x0003
MAX_PROBES = 200_000
HIST_BIN = 0.010

UDP_PORT = 5201
TCP_TRANSFER_PORT = 5202
TCP_SESSION_PORT = 5203


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdpStreamResult:
    interval_ms: float
    sent: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    send_errors: int
    max_gap_ms: float  # longest time between two successive echoes (the interruption)
    longest_loss_run: int  # most consecutive sequence numbers never echoed
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    duration_s: float
    histogram_10ms: list[int] = field(default_factory=list)  # echoes per 10 ms since start

    @property
    def interruption_ms(self) -> float:
        """The gap beyond the nominal probe spacing."""
        return max(0.0, self.max_gap_ms - self.interval_ms)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "interruption_ms": round(self.interruption_ms, 3)}


@dataclass(frozen=True, slots=True)
class TcpTransferResult:
    bytes_sent: int
    bytes_acknowledged: int  # what the server says it received
    seconds: float
    mbit_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TcpSessionResult:
    survived: bool  # no reset, no timeout, every message echoed in order, clean close
    sent: int
    echoed: int
    error: str  # empty when survived
    max_rtt_ms: float
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PingResult:
    transmitted: int
    received: int
    loss_pct: float
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.received > 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SniffResult:
    frames: int  # all frames seen
    matched: int  # frames passing the filters
    samples: list[dict[str, str]]  # up to 20 matched frames: src, dst, ethertype

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- pure analysis ---------------------------------------------------------------------------


def summarize_stream(
    interval: float,
    sent: int,
    send_errors: int,
    echoes: Sequence[tuple[int, float, float]],
    duration: float,
) -> UdpStreamResult:
    """``echoes`` are (sequence, send time, arrival time) in arrival order, times in seconds
    since the first send."""
    seen: set[int] = set()
    duplicates = reordered = 0
    highest = -1
    rtts: list[float] = []
    arrivals: list[float] = []
    for seq, sent_at, arrived in echoes:
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            reordered += 1
        highest = max(highest, seq)
        rtts.append((arrived - sent_at) * 1000)
        arrivals.append(arrived)
    max_gap = max((b - a for a, b in itertools.pairwise(arrivals)), default=0.0)
    run = longest = 0
    for seq in range(sent):
        run = 0 if seq in seen else run + 1
        longest = max(longest, run)
    bins = [0] * (int(max(duration, arrivals[-1] if arrivals else 0.0) / HIST_BIN) + 1)
    for arrived in arrivals:
        bins[int(arrived / HIST_BIN)] += 1
    return UdpStreamResult(
        interval_ms=interval * 1000,
        sent=sent,
        received=len(seen),
        lost=sent - len(seen),
        duplicates=duplicates,
        reordered=reordered,
        send_errors=send_errors,
        max_gap_ms=round(max_gap * 1000, 3),
        longest_loss_run=longest,
        rtt_min_ms=round(min(rtts), 3) if rtts else None,
        rtt_avg_ms=round(sum(rtts) / len(rtts), 3) if rtts else None,
        rtt_max_ms=round(max(rtts), 3) if rtts else None,
        duration_s=round(duration, 3),
        histogram_10ms=bins,
    )


_PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_LOSS = re.compile(r"([\d.]+)% packet loss")
_PING_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/[\d.]+ ms")


def parse_ping(text: str, exit_code: int = 0) -> PingResult:
    """Parse iputils ping's summary lines."""
    counts = _PING_COUNTS.search(text)
    loss = _PING_LOSS.search(text)
    rtt = _PING_RTT.search(text)
    transmitted, received = (int(counts.group(1)), int(counts.group(2))) if counts else (0, 0)
    return PingResult(
        transmitted=transmitted,
        received=received,
        loss_pct=float(loss.group(1)) if loss else 100.0,
        rtt_min_ms=float(rtt.group(1)) if rtt else None,
        rtt_avg_ms=float(rtt.group(2)) if rtt else None,
        rtt_max_ms=float(rtt.group(3)) if rtt else None,
        exit_code=exit_code,
    )


# --- the launcher side -----------------------------------------------------------------------


def _tool_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "netlmm_lab.tools", *args]


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _read_line(proc: subprocess.Popen[Any], timeout: float, what: str) -> str:
    """One stdout line from a tool (its ``ready``/``connected`` handshake), bounded in time."""
    stream: IO[str] | None = proc.stdout
    if stream is None:
        raise LabError(f"{what}: started without a stdout pipe")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            line = stream.readline()
            if not line:
                break
            return line.strip()
    err = ""
    if proc.poll() is not None and proc.stderr is not None:
        err = proc.stderr.read()[-500:]
    raise LabError(f"{what}: no handshake within {timeout}s {err}".strip())


def _finish(lab: Lab, proc: subprocess.Popen[Any], timeout: float, what: str) -> dict[str, Any]:
    """Wait for a tool to print its JSON result and exit (closing its stdin: the tools that
    read it take EOF as "stop now")."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        lab.stop(proc)
        raise LabError(f"{what}: no result within {timeout}s") from exc
    lab.forget(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise LabError(f"{what}: exit {proc.returncode}: {err.strip()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class _Server:
    """A tool's server end: started, awaited until it says ``ready``."""

    def __init__(self, lab: Lab, ns: str, argv: list[str], what: str) -> None:
        self.lab, self.what = lab, what
        self.proc = lab.popen(ns, argv)
        _read_line(self.proc, 10.0, what)

    def result(self, timeout: float) -> dict[str, Any]:
        return _finish(self.lab, self.proc, timeout, self.what)

    def end(self, timeout: float) -> None:
        """Let the server exit on its own within ``timeout``, else stop it (by PID)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.communicate(timeout=timeout)
        self.lab.stop(self.proc)


class UdpStream:
    """Probe stream ``client_ns`` -> ``server`` (echoed back) in the background.

    ``start()``, do something (a handover), ``stop()`` -> :class:`UdpStreamResult`; or
    ``run()`` for a stream of ``count`` probes."""

    def __init__(
        self,
        lab: Lab,
        *,
        client_ns: str = "ms",
        server_ns: str = "cn",
        server: str = str(CN_ADDRESS),
        bind: str | None = None,
        port: int = UDP_PORT,
        interval: float = 0.005,
        count: int = 4000,
        size: int = 64,
        drain: float = 1.0,
    ) -> None:
        if not 0 < count <= MAX_PROBES:
            raise ValueError(f"count must be 1..{MAX_PROBES}")
        self.lab, self.client_ns, self.server_ns = lab, client_ns, server_ns
        self.server, self.bind, self.port = server, bind or server, port
        self.interval, self.count, self.size, self.drain = interval, count, size, drain
        self._echo: _Server | None = None
        self._sender: subprocess.Popen[Any] | None = None

    @property
    def max_seconds(self) -> float:
        return self.count * self.interval + self.drain + 5.0

    def start(self) -> None:
        seconds = f"{self.max_seconds + 10:.1f}"
        self._echo = _Server(
            self.lab,
            self.server_ns,
            _tool_argv(
                "udp-echo", "--bind", self.bind, "--port", str(self.port), "--seconds", seconds
            ),
            "udp-echo",
        )
        self._sender = self.lab.popen(
            self.client_ns,
            _tool_argv(
                "udp-stream",
                "--dst",
                self.server,
                "--port",
                str(self.port),
                "--interval",
                str(self.interval),
                "--count",
                str(self.count),
                "--size",
                str(self.size),
                "--drain",
                str(self.drain),
                "--stdin-stop",
            ),
            stdin=subprocess.PIPE,
        )
        _read_line(self._sender, 10.0, "udp-stream")

    def stop(self) -> UdpStreamResult:
        """Stop sending now (or let a finished stream end), drain, report."""
        if self._sender is None or self._echo is None:
            raise LabError("stream not started")
        data = _finish(self.lab, self._sender, self.max_seconds, "udp-stream")
        if self._echo.proc.poll() is None:  # the sender's BYE was lost
            with contextlib.suppress(LabError):
                _poke_udp(self.lab, self.client_ns, self.server, self.port)
        self._echo.end(2.0)
        data.pop("interruption_ms", None)
        return UdpStreamResult(**data)

    def wait(self) -> UdpStreamResult:
        """Let the stream send all ``count`` probes, then report."""
        if self._sender is None:
            raise LabError("stream not started")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._sender.wait(timeout=self.max_seconds)
        return self.stop()

    def run(self) -> UdpStreamResult:
        self.start()
        return self.wait()


def _poke_udp(lab: Lab, ns: str, server: str, port: int) -> None:
    """Tell the echo server to exit (a 'BYE' datagram), for when the sender's was lost."""
    lab.exec(ns, _tool_argv("udp-bye", "--dst", server, "--port", str(port)), timeout=10)


def tcp_transfer(
    lab: Lab,
    *,
    client_ns: str = "ms",
    server_ns: str = "cn",
    server: str = str(CN_ADDRESS),
    bind: str | None = None,
    port: int = TCP_TRANSFER_PORT,
    nbytes: int = 10_000_000,
    seconds: float = 10.0,
) -> TcpTransferResult:
    """Send ``nbytes`` (or for ``seconds``, whichever ends first) client -> server."""
    sink = _Server(
        lab,
        server_ns,
        _tool_argv(
            "tcp-sink",
            "--bind",
            bind or server,
            "--port",
            str(port),
            "--seconds",
            str(seconds + 20),
        ),
        "tcp-sink",
    )
    client = lab.popen(
        client_ns,
        _tool_argv(
            "tcp-source",
            "--dst",
            server,
            "--port",
            str(port),
            "--bytes",
            str(nbytes),
            "--seconds",
            str(seconds),
        ),
    )
    data = _finish(lab, client, seconds + 20, "tcp-source")
    sink.end(10.0)
    return TcpTransferResult(**data)


class TcpSession:
    """A long-lived connection: ``start()`` before a handover, ``stop()`` after it."""

    def __init__(
        self,
        lab: Lab,
        *,
        client_ns: str = "ms",
        server_ns: str = "cn",
        server: str = str(CN_ADDRESS),
        bind: str | None = None,
        port: int = TCP_SESSION_PORT,
        interval: float = 0.05,
        max_seconds: float = 120.0,
        reply_timeout: float = 10.0,
    ) -> None:
        self.lab, self.client_ns, self.server_ns = lab, client_ns, server_ns
        self.server, self.bind, self.port = server, bind or server, port
        self.interval, self.max_seconds, self.reply_timeout = interval, max_seconds, reply_timeout
        self._echo: _Server | None = None
        self._client: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        self._echo = _Server(
            self.lab,
            self.server_ns,
            _tool_argv(
                "tcp-echo",
                "--bind",
                self.bind,
                "--port",
                str(self.port),
                "--seconds",
                str(self.max_seconds + 30),
            ),
            "tcp-echo",
        )
        self._client = self.lab.popen(
            self.client_ns,
            _tool_argv(
                "tcp-chat",
                "--dst",
                self.server,
                "--port",
                str(self.port),
                "--interval",
                str(self.interval),
                "--seconds",
                str(self.max_seconds),
                "--reply-timeout",
                str(self.reply_timeout),
            ),
            stdin=subprocess.PIPE,
        )
        line = _read_line(self._client, self.reply_timeout + 5, "tcp-chat")
        if line != "connected":
            raise LabError(f"tcp-chat did not connect: {line}")

    def stop(self) -> TcpSessionResult:
        if self._client is None or self._echo is None:
            raise LabError("session not started")
        data = _finish(self.lab, self._client, self.reply_timeout + 10, "tcp-chat")
        self._echo.end(self.reply_timeout + 10)
        return TcpSessionResult(**data)


def ping(
    lab: Lab,
    ns: str,
    dst: str,
    *,
    count: int = 3,
    interval: float = 0.2,
    size: int | None = None,
    df: bool = False,
) -> PingResult:
    """``ping -c count -W 1`` from ``ns``; ``df`` forbids fragmentation (``-M do``), else the
    packets may be fragmented on the way (``-M dont``: no DF bit)."""
    if not 1 <= count <= 10_000:
        raise ValueError("count must be 1..10000")
    argv = ["ping", "-n", "-c", str(count), "-W", "1", "-i", str(interval)]
    if ":" in dst:
        argv.append("-6")
    if size is not None:
        argv += ["-s", str(size)]
    # Linux ping sets DF by default ("want"): say which one is meant.
    argv += ["-M", "do" if df else "dont"]
    result = lab.exec(ns, [*argv, dst], timeout=count * max(interval, 0.01) + 10, check=False)
    return parse_ping(result.stdout, result.returncode)


class Sniffer:
    """Count frames on ``ifname`` in ``ns`` (packet socket), optionally only those from
    ``src_mac`` and/or of ``ethertype``; ``start()`` returns once the socket is bound."""

    def __init__(
        self,
        lab: Lab,
        ns: str,
        ifname: str,
        *,
        src_mac: str | None = None,
        ethertype: int | None = None,
        count: int = 1,
        seconds: float = 10.0,
    ) -> None:
        argv = ["sniff", "--iface", ifname, "--count", str(count), "--seconds", str(seconds)]
        if src_mac:
            argv += ["--src-mac", src_mac]
        if ethertype is not None:
            argv += ["--ethertype", str(ethertype)]
        self.lab, self.ns, self.argv, self.seconds = lab, ns, _tool_argv(*argv), seconds
        self._server: _Server | None = None

    def start(self) -> Sniffer:
        self._server = _Server(self.lab, self.ns, self.argv, "sniff")
        return self

    def done(self) -> bool:
        """The sniffer has exited (``count`` frames matched or its time is up)."""
        return self._server is not None and self._server.proc.poll() is not None

    def result(self) -> SniffResult:
        """Wait until ``count`` frames matched or the time is up."""
        if self._server is None:
            raise LabError("sniffer not started")
        return SniffResult(**self._server.result(self.seconds + 10))


# --- the tools themselves (run inside a namespace) -------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _bound_socket(kind: socket.SocketKind, bind: str, port: int) -> socket.socket:
    sock = socket.socket(_family(bind), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    return sock


def cmd_udp_echo(args: argparse.Namespace) -> None:
    sock = _bound_socket(socket.SOCK_DGRAM, args.bind, args.port)
    print("ready", flush=True)
    end = time.monotonic() + args.seconds
    echoed = 0
    while echoed < MAX_PROBES * 2 and time.monotonic() < end:
        ready, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        data, peer = sock.recvfrom(65535)
        if data == b"BYE":
            break
        with contextlib.suppress(OSError):
            sock.sendto(data, peer)
            echoed += 1
    _emit({"echoed": echoed})


def cmd_udp_bye(args: argparse.Namespace) -> None:
    with socket.socket(_family(args.dst), socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(b"BYE", (args.dst, args.port))


def cmd_udp_stream(args: argparse.Namespace) -> None:
    sock = socket.socket(_family(args.dst), socket.SOCK_DGRAM)
    sock.setblocking(False)
    dst = (args.dst, args.port)
    interval, count = args.interval, min(args.count, MAX_PROBES)
    pad = b"\0" * max(0, args.size - PROBE.size)
    watch: list[Any] = [sock]
    if args.stdin_stop:
        watch.append(sys.stdin)
    print("started", flush=True)
    start_ns = time.monotonic_ns()
    start = start_ns / 1e9
    end = start + count * interval + 60.0
    echoes: list[tuple[int, float, float]] = []
    sent = send_errors = 0
    next_at = start
    stopping = False

    def receive() -> None:
        for _ in range(1000):
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP errors surface here on a connected-ish socket
                continue
            now = time.monotonic()
            if len(data) >= PROBE.size:
                magic, seq, sent_ns = PROBE.unpack_from(data)
                if magic == PROBE_MAGIC and seq < sent:
                    echoes.append((seq, (sent_ns - start_ns) / 1e9, now - start))

    while sent < count and not stopping:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_at:
            try:
                sock.sendto(PROBE.pack(PROBE_MAGIC, sent, time.monotonic_ns()) + pad, dst)
            except OSError:
                send_errors += 1
            sent += 1
            next_at += interval
            if now - next_at > 1.0:  # the sender itself stalled: do not burst to catch up
                next_at = now + interval
            continue
        ready, _, _ = select.select(watch, [], [], max(0.0, next_at - time.monotonic()))
        if sock in ready:
            receive()
        if sys.stdin in ready and not sys.stdin.readline():
            stopping = True
    duration = time.monotonic() - start
    drain_end = time.monotonic() + args.drain
    while time.monotonic() < drain_end and len({e[0] for e in echoes}) < sent:
        ready, _, _ = select.select([sock], [], [], max(0.0, drain_end - time.monotonic()))
        if ready:
            receive()
    with contextlib.suppress(OSError):
        sock.sendto(b"BYE", dst)
    result = summarize_stream(interval, sent, send_errors, echoes, duration)
    _emit(result.to_json())


def cmd_tcp_sink(args: argparse.Namespace) -> None:
    listener = _bound_socket(socket.SOCK_STREAM, args.bind, args.port)
    listener.listen(1)
    listener.settimeout(args.seconds)
    print("ready", flush=True)
    conn, _ = listener.accept()
    conn.settimeout(args.seconds)
    total = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        total += len(chunk)
    conn.sendall(struct.pack("!Q", total))
    conn.close()
    _emit({"received": total})


def cmd_tcp_source(args: argparse.Namespace) -> None:
    sock = socket.create_connection((args.dst, args.port), timeout=10)
    sock.settimeout(args.seconds + 10)
    block = b"\xa5" * (1 << 16)
    sent = 0
    start = time.monotonic()
    end = start + args.seconds
    while sent < args.bytes and time.monotonic() < end:
        sent += sock.send(block[: min(len(block), args.bytes - sent)])
    sock.shutdown(socket.SHUT_WR)
    ack = b""
    while len(ack) < 8:
        chunk = sock.recv(8 - len(ack))
        if not chunk:
            break
        ack += chunk
    seconds = time.monotonic() - start
    sock.close()
    acknowledged = struct.unpack("!Q", ack)[0] if len(ack) == 8 else 0
    result = TcpTransferResult(
        sent, acknowledged, round(seconds, 4), round(acknowledged * 8 / seconds / 1e6, 3)
    )
    _emit(result.to_json())


def cmd_tcp_echo(args: argparse.Namespace) -> None:
    listener = _bound_socket(socket.SOCK_STREAM, args.bind, args.port)
    listener.listen(1)
    listener.settimeout(args.seconds)
    print("ready", flush=True)
    conn, _ = listener.accept()
    end = time.monotonic() + args.seconds
    total = 0
    error = ""
    try:
        while time.monotonic() < end:
            conn.settimeout(max(0.1, end - time.monotonic()))
            chunk = conn.recv(65536)
            if not chunk:
                break
            conn.sendall(chunk)
            total += len(chunk)
    except OSError as exc:
        error = type(exc).__name__
    conn.close()
    _emit({"echoed_bytes": total, "error": error})


def cmd_tcp_chat(args: argparse.Namespace) -> None:
    sock = socket.create_connection((args.dst, args.port), timeout=args.reply_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("connected", flush=True)
    start = time.monotonic()
    end = start + args.seconds
    sent = echoed = 0
    max_rtt = 0.0
    error = ""
    try:
        while time.monotonic() < end:
            t0 = time.monotonic_ns()
            sock.sendall(CHAT.pack(sent, t0))
            sent += 1
            reply = b""
            sock.settimeout(args.reply_timeout)
            while len(reply) < CHAT.size:
                chunk = sock.recv(CHAT.size - len(reply))
                if not chunk:
                    raise ConnectionError("closed by the server")
                reply += chunk
            seq, stamp = CHAT.unpack(reply)
            if (seq, stamp) != (sent - 1, t0):
                raise ConnectionError(f"echo out of order: {seq} for {sent - 1}")
            echoed += 1
            max_rtt = max(max_rtt, (time.monotonic_ns() - t0) / 1e6)
            ready, _, _ = select.select([sys.stdin], [], [], args.interval)
            if ready and not sys.stdin.readline():
                break
        sock.settimeout(args.reply_timeout)
        sock.shutdown(socket.SHUT_WR)
        if sock.recv(1) != b"":
            raise ConnectionError("data after the last echo")
    except (OSError, ConnectionError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    result = TcpSessionResult(
        survived=not error and echoed == sent,
        sent=sent,
        echoed=echoed,
        error=error,
        max_rtt_ms=round(max_rtt, 3),
        duration_s=round(time.monotonic() - start, 3),
    )
    _emit(result.to_json())


def cmd_sniff(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    want_src = bytes.fromhex(args.src_mac.replace(":", "")) if args.src_mac else None
    print("ready", flush=True)
    end = time.monotonic() + args.seconds
    frames = matched = 0
    samples: list[dict[str, str]] = []
    while matched < args.count and frames < 100_000:
        left = end - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        frame = sock.recv(65535)
        frames += 1
        if len(frame) < 14:
            continue
        ethertype = int.from_bytes(frame[12:14], "big")
        if want_src is not None and frame[6:12] != want_src:
            continue
        if args.ethertype is not None and ethertype != args.ethertype:
            continue
        matched += 1
        if len(samples) < 20:
            samples.append(
                {
                    "src": frame[6:12].hex(":"),
                    "dst": frame[0:6].hex(":"),
                    "ethertype": f"{ethertype:#06x}",
                }
            )
    _emit(SniffResult(frames, matched, samples).to_json())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netlmm_lab.tools")
    sub = parser.add_subparsers(dest="tool", required=True)

    def server(name: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name)
        p.add_argument("--bind", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--seconds", type=float, default=60.0)
        return p

    def client(name: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name)
        p.add_argument("--dst", required=True)
        p.add_argument("--port", type=int, required=True)
        return p

    server("udp-echo")
    server("tcp-sink")
    server("tcp-echo")
    client("udp-bye")
    stream = client("udp-stream")
    stream.add_argument("--interval", type=float, default=0.005)
    stream.add_argument("--count", type=int, default=1000)
    stream.add_argument("--size", type=int, default=64)
    stream.add_argument("--drain", type=float, default=1.0)
    stream.add_argument("--stdin-stop", action="store_true")
    source = client("tcp-source")
    source.add_argument("--bytes", type=int, default=10_000_000)
    source.add_argument("--seconds", type=float, default=10.0)
    chat = client("tcp-chat")
    chat.add_argument("--interval", type=float, default=0.05)
    chat.add_argument("--seconds", type=float, default=120.0)
    chat.add_argument("--reply-timeout", type=float, default=10.0)
    sniff = sub.add_parser("sniff")
    sniff.add_argument("--iface", required=True)
    sniff.add_argument("--count", type=int, default=1)
    sniff.add_argument("--seconds", type=float, default=10.0)
    sniff.add_argument("--src-mac")
    sniff.add_argument("--ethertype", type=lambda text: int(text, 0))
    return parser


COMMANDS = {
    "udp-echo": cmd_udp_echo,
    "udp-bye": cmd_udp_bye,
    "udp-stream": cmd_udp_stream,
    "tcp-sink": cmd_tcp_sink,
    "tcp-source": cmd_tcp_source,
    "tcp-echo": cmd_tcp_echo,
    "tcp-chat": cmd_tcp_chat,
    "sniff": cmd_sniff,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    COMMANDS[args.tool](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
