"""The lab's traffic tools, run inside a namespace: ``python -m netlmm_lab.children.traffic
TOOL ...`` (started and read by :mod:`netlmm_lab.tools`).

Servers (``udp-echo``, ``tcp-sink``, ``tcp-echo``, ``sniff``) print ``ready`` once bound, serve
one client and exit; clients (``udp-stream``, ``tcp-source``, ``tcp-chat``, ``udp-bye``) print
their result as one JSON line. Every tool is bounded in packets and seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from netlmm_lab.tools import (
    CHAT,
    ETH_P_ALL,
    MAX_PROBES,
    PROBE,
    PROBE_MAGIC,
    SniffResult,
    TcpSessionResult,
    TcpTransferResult,
    summarize_stream,
)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


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
    parser = argparse.ArgumentParser(prog="python -m netlmm_lab.children.traffic")
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
