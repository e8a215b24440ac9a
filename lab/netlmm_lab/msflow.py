"""Every real MS's own traffic through a failover: one small process per MS and one server.

``python -m netlmm_lab.msflow client`` runs in an MS's namespace and carries, over that MS's
own address, a TCP session (a 16-byte message every ``--tcp-interval``, echoed by the CN in
order) and a numbered UDP flow (a probe every ``--interval``, echoed by the CN) until its stdin
closes; it then prints one JSON line: the UDP summary (loss, longest gap between echoes) with
the wall-clock bounds of that longest gap (so a test can tell "kill -> first packet delivered"),
and whether the TCP session survived. ``python -m netlmm_lab.msflow server`` runs once in the
CN and serves every MS: one UDP echo socket and a TCP listener that echoes each connection.
The ping every 10 ms beside them is iputils' (:class:`netlmm_lab.tools.BackgroundPing`).

:class:`MSFlows` starts the server and one client per MS, and stops them. Every loop is bounded
in time and count; the server and the clients exit on their own at ``--seconds``. The server
prints a JSON summary at its end (UDP echoes, TCP sessions accepted, closed, in error), which
:meth:`MSFlows.stop` reads and checks (one TCP session per MS).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netlmm_lab.errors import LabError
from netlmm_lab.poll import read_line
from netlmm_lab.tools import CHAT, MAX_PROBES, PROBE, PROBE_MAGIC, summarize_stream
from netlmm_lab.topology import CN_ADDRESS, Lab

UDP_PORT = 5211
TCP_PORT = 5212
MAX_CLIENTS = 64
#: The server's bound in count (besides ``--seconds``): every client's probes (at most
#: ``MAX_PROBES`` each) and as many TCP messages.
MAX_ECHOES = 2 * MAX_PROBES * MAX_CLIENTS


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


# --- the CN's side ---------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind((args.bind, args.udp_port))
    udp.setblocking(False)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.bind, args.tcp_port))
    listener.listen(MAX_CLIENTS)
    listener.setblocking(False)
    print("ready", flush=True)
    conns: dict[socket.socket, bytes] = {}
    echoed = tcp_echoed = accepted = closed = errors = 0
    end = time.monotonic() + args.seconds
    stopping = False
    while not stopping and time.monotonic() < end and echoed + tcp_echoed < MAX_ECHOES:
        watch: list[Any] = [udp, listener, sys.stdin, *conns]
        ready, _, _ = select.select(watch, [], [], max(0.0, min(1.0, end - time.monotonic())))
        for item in ready:
            if item is sys.stdin:
                stopping = not sys.stdin.readline()
            elif item is udp:
                for _ in range(256):
                    try:
                        data, peer = udp.recvfrom(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue
                    with contextlib.suppress(OSError):
                        udp.sendto(data, peer)
                        echoed += 1
            elif item is listener:
                with contextlib.suppress(BlockingIOError):
                    conn, _ = listener.accept()
                    if len(conns) >= MAX_CLIENTS:
                        conn.close()
                        continue
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.settimeout(5.0)  # sendall of a few bytes; the reads come after select
                    conns[conn] = b""
                    accepted += 1
            else:
                try:
                    chunk = item.recv(65536)
                    if chunk:
                        item.sendall(chunk)
                        tcp_echoed += 1
                        continue
                    closed += 1
                except OSError:
                    errors += 1
                item.close()
                del conns[item]
    for conn in conns:
        conn.close()
    _emit(
        {
            "udp_echoed": echoed,
            "tcp_echoed": tcp_echoed,
            "tcp_accepted": accepted,
            "tcp_closed": closed,
            "tcp_errors": errors,
        }
    )


# --- one MS ----------------------------------------------------------------------------------


class _Chat:
    """The TCP session: one message out at a time, the next ``interval`` after its echo."""

    def __init__(self, sock: socket.socket, interval: float, reply_timeout: float) -> None:
        self.sock, self.interval, self.reply_timeout = sock, interval, reply_timeout
        self.sent = self.echoed = 0
        self.outstanding: tuple[int, int, float] | None = None  # seq, stamp, sent at
        self.buffer = b""
        self.next_at = time.monotonic()
        self.max_rtt = 0.0
        self.error = ""

    def due(self) -> float:
        if self.error:
            return float("inf")
        if self.outstanding is not None:
            return self.outstanding[2] + self.reply_timeout
        return self.next_at

    def tick(self, now: float) -> None:
        if self.error:
            return
        if self.outstanding is not None:
            if now - self.outstanding[2] > self.reply_timeout:
                self.error = f"no echo of message {self.outstanding[0]} in {self.reply_timeout}s"
            return
        if now >= self.next_at:
            stamp = time.monotonic_ns()
            try:
                self.sock.sendall(CHAT.pack(self.sent, stamp))
            except OSError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return
            self.outstanding = (self.sent, stamp, now)
            self.sent += 1

    def receive(self) -> None:
        try:
            chunk = self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        if not chunk:
            self.error = "closed by the server"
            return
        self.buffer += chunk
        while len(self.buffer) >= CHAT.size and not self.error:
            seq, stamp = CHAT.unpack_from(self.buffer)
            self.buffer = self.buffer[CHAT.size :]
            if self.outstanding is None or (seq, stamp) != self.outstanding[:2]:
                self.error = f"echo out of order: {seq}"
                return
            self.echoed += 1
            self.max_rtt = max(self.max_rtt, (time.monotonic_ns() - stamp) / 1e6)
            self.outstanding = None
            self.next_at = time.monotonic() + self.interval

    def close(self, timeout: float) -> None:
        """Wait for the last echo, half-close, and expect the server's clean close."""
        deadline = time.monotonic() + timeout
        self.sock.setblocking(True)
        try:
            while self.outstanding is not None and not self.error:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                self.receive()
                if time.monotonic() > deadline and self.outstanding is not None:
                    self.error = "no echo of the last message"
            if not self.error:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                self.sock.shutdown(socket.SHUT_WR)
                if self.sock.recv(1) != b"":
                    self.error = "data after the last echo"
        except OSError as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
        finally:
            self.sock.close()


def cmd_client(args: argparse.Namespace) -> None:
    tcp = socket.create_connection((args.dst, args.tcp_port), timeout=args.reply_timeout)
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    dst = (args.dst, args.udp_port)
    chat = _Chat(tcp, args.tcp_interval, args.reply_timeout)
    print("connected", flush=True)
    start_ns = time.monotonic_ns()
    start = start_ns / 1e9
    wall_offset = time.time() - time.monotonic()
    end = start + args.seconds
    interval = args.interval
    echoes: list[tuple[int, float, float]] = []
    sent = send_errors = 0
    next_udp = start
    stopping = False

    def receive_udp() -> None:
        for _ in range(256):
            try:
                data = udp.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if len(data) >= PROBE.size:
                magic, seq, sent_ns = PROBE.unpack_from(data)
                if magic == PROBE_MAGIC and seq < sent:
                    echoes.append((seq, (sent_ns - start_ns) / 1e9, time.monotonic() - start))

    while not stopping and sent < MAX_PROBES:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_udp:
            try:
                udp.sendto(PROBE.pack(PROBE_MAGIC, sent, time.monotonic_ns()), dst)
            except OSError:
                send_errors += 1
            sent += 1
            next_udp += interval
            if now - next_udp > 1.0:  # this process stalled: do not burst to catch up
                next_udp = now + interval
        chat.tick(now)
        wake = min(next_udp, chat.due(), end)
        watch: list[Any] = [udp, sys.stdin] if chat.error else [udp, tcp, sys.stdin]
        ready, _, _ = select.select(watch, [], [], max(0.0, wake - time.monotonic()))
        if udp in ready:
            receive_udp()
        if tcp in ready:
            chat.receive()
        if sys.stdin in ready and not sys.stdin.readline():
            stopping = True
    duration = time.monotonic() - start
    drain_end = time.monotonic() + args.drain
    while time.monotonic() < drain_end and len({e[0] for e in echoes}) < sent:
        ready, _, _ = select.select([udp], [], [], max(0.0, drain_end - time.monotonic()))
        if ready:
            receive_udp()
    udp.close()
    chat.close(args.reply_timeout)
    summary = summarize_stream(interval, sent, send_errors, echoes, duration).to_json()
    summary.pop("histogram_10ms", None)
    arrivals = sorted(arrived for _, _, arrived in echoes)
    gap_from = gap_to = None
    if len(arrivals) > 1:
        a, b = max(itertools.pairwise(arrivals), key=lambda pair: pair[1] - pair[0])
        gap_from, gap_to = start + a + wall_offset, start + b + wall_offset
    tcp_result = {
        "survived": not chat.error and chat.echoed == chat.sent,
        "sent": chat.sent,
        "echoed": chat.echoed,
        "error": chat.error,
        "max_rtt_ms": round(chat.max_rtt, 3),
    }
    _emit({"udp": summary, "gap_from": gap_from, "gap_to": gap_to, "tcp": tcp_result})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netlmm_lab.msflow")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("--bind", default=str(CN_ADDRESS))
    server.add_argument("--udp-port", type=int, default=UDP_PORT)
    server.add_argument("--tcp-port", type=int, default=TCP_PORT)
    server.add_argument("--seconds", type=float, default=120.0)
    client = sub.add_parser("client")
    client.add_argument("--dst", default=str(CN_ADDRESS))
    client.add_argument("--udp-port", type=int, default=UDP_PORT)
    client.add_argument("--tcp-port", type=int, default=TCP_PORT)
    client.add_argument("--interval", type=float, default=0.01)
    client.add_argument("--tcp-interval", type=float, default=0.05)
    client.add_argument("--seconds", type=float, default=120.0)
    client.add_argument("--reply-timeout", type=float, default=20.0)
    client.add_argument("--drain", type=float, default=0.5)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.seconds <= 600:
        raise SystemExit("--seconds is (0, 600]")
    if args.command == "server":
        cmd_server(args)
    else:
        if not 0.001 <= args.interval <= 1 or not 0.001 <= args.tcp_interval <= 10:
            raise SystemExit("--interval 0.001..1, --tcp-interval 0.001..10")
        cmd_client(args)
    return 0


# --- the launcher side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MSFlowResult:
    ms: str
    udp: dict[str, Any]
    gap_from: float | None  # wall clock of the last echo before the longest gap
    gap_to: float | None  # and of the first after it
    tcp: dict[str, Any]

    @property
    def max_gap_ms(self) -> float:
        return float(self.udp["max_gap_ms"])

    @property
    def tcp_survived(self) -> bool:
        return bool(self.tcp["survived"])


class MSFlows:
    """The server in ``server_ns`` and one client per MS in ``mss``: :meth:`start`, then
    :meth:`stop` -> one :class:`MSFlowResult` per MS."""

    def __init__(
        self,
        lab: Lab,
        mss: Sequence[str],
        *,
        server_ns: str = "cn",
        seconds: float = 120.0,
        interval: float = 0.01,
    ) -> None:
        self.lab, self.mss, self.server_ns = lab, list(mss), server_ns
        self.seconds, self.interval = seconds, interval
        self._server: subprocess.Popen[Any] | None = None
        self._clients: dict[str, subprocess.Popen[Any]] = {}
        #: The server's JSON summary after :meth:`stop` (UDP echoes, TCP sessions accepted,
        #: closed cleanly, ended in error).
        self.server: dict[str, Any] = {}

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "netlmm_lab.msflow", *args, "--seconds", str(self.seconds)]

    def start(self) -> None:
        self._server = self.lab.popen(self.server_ns, self._argv("server"), stdin=subprocess.PIPE)
        read_line(self._server, 15.0, "msflow server")
        for ms in self.mss:
            argv = self._argv("client", "--interval", str(self.interval))
            self._clients[ms] = self.lab.popen(ms, argv, stdin=subprocess.PIPE)
        for ms, proc in self._clients.items():
            line = read_line(proc, 25.0, f"msflow client in {ms}")
            if line != "connected":
                raise LabError(f"msflow client in {ms}: {line}")

    def stop(self, timeout: float = 40.0) -> list[MSFlowResult]:
        """Close every client's stdin (stop now), read their results, then the server's summary
        (:attr:`server`): it must have accepted one TCP session per MS."""
        for proc in self._clients.values():
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                proc.stdin = None  # closed: communicate() must not flush it
        results = []
        deadline = time.monotonic() + timeout
        for ms, proc in self._clients.items():
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                self.lab.stop(proc)
                raise LabError(f"msflow client in {ms}: no result") from exc
            self.lab.forget(proc)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise LabError(f"msflow client in {ms}: exit {proc.returncode}: {err[-500:]}")
            data = json.loads(lines[-1])
            results.append(
                MSFlowResult(ms, data["udp"], data["gap_from"], data["gap_to"], data["tcp"])
            )
        self._clients.clear()
        if self._server is not None:
            if self._server.stdin is not None:
                with contextlib.suppress(OSError):
                    self._server.stdin.close()
                self._server.stdin = None
            out = ""
            with contextlib.suppress(subprocess.TimeoutExpired):
                out, _ = self._server.communicate(timeout=5.0)
            self.lab.stop(self._server)
            self._server = None
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if not lines:
                raise LabError("msflow server: no summary")
            self.server = json.loads(lines[-1])
            if self.server["tcp_accepted"] != len(self.mss):
                raise LabError(f"msflow server: {self.server} for {len(self.mss)} MSs")
        return results

    def close(self) -> None:
        """End whatever still runs (a failed test), by PID."""
        for proc in [*self._clients.values(), *([self._server] if self._server else [])]:
            self.lab.stop(proc)
        self._clients.clear()
        self._server = None


if __name__ == "__main__":
    raise SystemExit(main())
