"""Measurement tools for the lab, run inside its namespaces with this same interpreter.

Each tool is a subcommand of ``python -m netlmm_lab.children.traffic`` (so it runs in any
namespace through :meth:`Lab.popen`) and a small class or function here that starts it and
parses its JSON:

- :class:`UdpStream`: a probe every ``interval`` (5 ms) from the MS, echoed by the CN; reports
  loss, duplicates, reordering, the longest gap between echoes (the handover interruption) and
  echoes per 10 ms (for a plot).
- :func:`tcp_transfer`: N bytes or T seconds client -> server; throughput.
- :class:`TcpSession`: a connection opened before a handover that keeps exchanging small
  messages; did it survive (no reset, every message echoed in order)?
- :func:`ping`: ``ping -c N -W 1`` parsed into loss and RTTs.
- :class:`Sniffer`: counts frames on an interface (packet socket), e.g. the MS's ARP on acc0.
- :func:`capture_open`: whether a live tshark or dumpcap captures yet (read from its stderr).

Every tool is bounded in packets and seconds; servers serve one client and exit.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netlmm_lab.errors import LabError
from netlmm_lab.poll import read_line
from netlmm_lab.topology import CN_ADDRESS, Lab

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


def _tool_argv(tool: str, **options: object) -> list[str]:
    """The command line of ``tool`` (netlmm_lab.children.traffic): each option a ``--name``
    (``_`` as ``-``) and its value, or the bare flag for True; None and False are left out."""
    argv = [sys.executable, "-m", "netlmm_lab.children.traffic", tool]
    for name, value in options.items():
        if value is None or value is False:
            continue
        argv.append("--" + name.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    return argv


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
        read_line(self.proc, 10.0, what)

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
            _tool_argv("udp-echo", bind=self.bind, port=self.port, seconds=seconds),
            "udp-echo",
        )
        self._sender = self.lab.popen(
            self.client_ns,
            _tool_argv(
                "udp-stream",
                dst=self.server,
                port=self.port,
                interval=self.interval,
                count=self.count,
                size=self.size,
                drain=self.drain,
                stdin_stop=True,
            ),
            stdin=subprocess.PIPE,
        )
        read_line(self._sender, 10.0, "udp-stream")

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
    lab.exec(ns, _tool_argv("udp-bye", dst=server, port=port), timeout=10)


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
        _tool_argv("tcp-sink", bind=bind or server, port=port, seconds=seconds + 20),
        "tcp-sink",
    )
    client = lab.popen(
        client_ns,
        _tool_argv("tcp-source", dst=server, port=port, bytes=nbytes, seconds=seconds),
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
            _tool_argv("tcp-echo", bind=self.bind, port=self.port, seconds=self.max_seconds + 30),
            "tcp-echo",
        )
        self._client = self.lab.popen(
            self.client_ns,
            _tool_argv(
                "tcp-chat",
                dst=self.server,
                port=self.port,
                interval=self.interval,
                seconds=self.max_seconds,
                reply_timeout=self.reply_timeout,
            ),
            stdin=subprocess.PIPE,
        )
        line = read_line(self._client, self.reply_timeout + 5, "tcp-chat")
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
    ttl: int | None = None,
) -> PingResult:
    """``ping -c count -W 1`` from ``ns``; ``df`` forbids fragmentation (``-M do``), else the
    packets may be fragmented on the way (``-M dont``: no DF bit); ``ttl``: ``-t``."""
    if not 1 <= count <= 10_000:
        raise ValueError("count must be 1..10000")
    argv = ["ping", "-n", "-c", str(count), "-W", "1", "-i", str(interval)]
    if ":" in dst:
        argv.append("-6")
    if size is not None:
        argv += ["-s", str(size)]
    if ttl is not None:
        argv += ["-t", str(ttl)]
    # Linux ping sets DF by default ("want"): say which one is meant.
    argv += ["-M", "do" if df else "dont"]
    result = lab.exec(ns, [*argv, dst], timeout=count * max(interval, 0.01) + 10, check=False)
    return parse_ping(result.stdout, result.returncode)


class BackgroundPing:
    """``ping`` from ``ns`` to ``dst`` every ``interval`` seconds while something else runs (at
    most ``seconds``); :meth:`stop` interrupts it (SIGINT: ping prints its summary) and reads
    the summary."""

    def __init__(self, lab: Lab, ns: str, dst: str, *, interval: float, seconds: float) -> None:
        self.lab = lab
        argv = ["ping", "-n", "-q", "-i", str(interval), "-W", "1", "-w", str(int(seconds)), dst]
        self.proc = lab.popen(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self) -> PingResult:
        self.proc.send_signal(signal.SIGINT)
        try:
            text, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            text, _ = self.proc.communicate(timeout=5)
        self.lab.forget(self.proc)
        return parse_ping(text or "", self.proc.returncode or 0)


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
        argv = _tool_argv(
            "sniff",
            iface=ifname,
            count=count,
            seconds=seconds,
            src_mac=src_mac or None,
            ethertype=ethertype,
        )
        self.lab, self.ns, self.argv, self.seconds = lab, ns, argv, seconds
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


#: What a live tshark or dumpcap writes to its stderr once it captures: its file's line. The
#: earlier "Capturing on" is no such sign: tshark prints it before its dumpcap has opened the
#: link, dumpcap before it reads. A ping sent right after it was lost 15 times in 15 (tshark)
#: and 9 in 15 (dumpcap); after the file's line, none in 15 of each.
CAPTURE_OPEN = "File: "


def capture_open(stderr: Path) -> bool:
    """Whether the live tshark or dumpcap whose stderr goes to ``stderr`` captures yet."""
    return CAPTURE_OPEN in stderr.read_text(errors="replace")
