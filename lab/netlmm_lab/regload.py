"""A registration load generator for the end-to-end signaling benchmark: PBUs over a real raw
MH socket to a running ``netlmm run`` DLMAP, PBAs counted back.

``python -m netlmm_lab.regload --src ADDR --dst ADDR`` (run inside a lab namespace that has
``--src``) plays one DMPA (an ``insecure = yes`` peer of the DLMAP: unsigned, so the
generator's own CPU stays small) with ``--nais`` MSs: it registers each once, then refreshes
them in turn, keeping ``--window`` PBUs in flight for ``--seconds``; a PBU whose PBA has not
come back after ``--timeout`` is given up (counted) and its slot reused. It prints one JSON
object: PBUs sent, PBAs back, accepted (status 0), the rate of PBAs, and the PBA latency
percentiles (send to receive, microseconds). The PBUs are encoded before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import time
from ipaddress import IPv4Address, IPv6Address

from router.adapters.sockets import open_mh_socket
from router.wire.dialect import DRAFT
from router.wire.mh import BindingUpdate
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress

SEQUENCES = 1 << 16
#: MH: proto, length, type, reserved, checksum (6 bytes), then a PBA's status, flags, sequence.
STATUS_AT, SEQUENCE_AT, BINDING_ACK = 6, 8, 6


def encode_all(nais: int, lifetime: int) -> list[bytes]:
    """One PBU per sequence number: sequence ``s`` is for MS ``s % nais``."""
    seed = SeedIPv4HomeAddress(0, IPv4Address(0))
    ids = [MobileNodeIdentifier.from_nai(f"load{i}@bench.example") for i in range(nais)]
    return [
        BindingUpdate(s, DRAFT.pbu_flags(), lifetime, (ids[s % nais], seed)).encode()
        for s in range(SEQUENCES)
    ]


def run(
    src: IPv6Address,
    dst: IPv6Address,
    *,
    nais: int,
    window: int,
    seconds: float,
    timeout: float,
    lifetime: int = 900,
) -> dict[str, object]:
    wires = encode_all(nais, lifetime)
    sock = open_mh_socket(src, rcvbuf=8 << 20)
    sock.setblocking(False)
    target = (str(dst), 0)
    sent_at = [0.0] * SEQUENCES
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = answered = accepted = timeouts = errors = 0
    next_seq = 1
    in_flight: dict[int, float] = {}
    began = time.perf_counter()
    end = began + seconds
    clock = time.perf_counter

    def send_one() -> None:
        nonlocal next_seq, sent, errors
        seq = next_seq
        next_seq = (next_seq + 1) % SEQUENCES
        now = clock()
        try:
            sock.sendto(wires[seq], target)
        except OSError:
            errors += 1
            return
        sent_at[seq] = now
        in_flight[seq] = now
        sent += 1

    for _ in range(window):
        send_one()
    for _ in range(100_000_000):  # bounded: ends at ``end``
        now = clock()
        if now >= end:
            break
        readable, _, _ = select.select([sock], [], [], min(0.05, end - now))
        if readable:
            for _ in range(1024):
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                if len(data) < 12 or data[2] != BINDING_ACK:
                    continue
                seq = int.from_bytes(data[SEQUENCE_AT : SEQUENCE_AT + 2], "big")
                started = in_flight.pop(seq, None)
                if started is None:
                    continue
                got = clock()
                answered += 1
                status = data[STATUS_AT]
                statuses[status] = statuses.get(status, 0) + 1
                accepted += status == 0
                latencies.append(got - sent_at[seq])
                if got < end:
                    send_one()
        stale = [s for s, t in in_flight.items() if clock() - t > timeout]
        for seq in stale:
            del in_flight[seq]
            timeouts += 1
            send_one()
    elapsed = clock() - began
    sock.close()
    latencies.sort()

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6, 1)

    return {
        "seconds": round(elapsed, 3),
        "nais": nais,
        "window": window,
        "sent": sent,
        "answered": answered,
        "accepted": accepted,
        "timeouts": timeouts,
        "send_errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "pbas_per_s": round(answered / elapsed, 1),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": pct(1.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netlmm_lab.regload")
    parser.add_argument("--src", type=IPv6Address, required=True)
    parser.add_argument("--dst", type=IPv6Address, required=True)
    parser.add_argument("--nais", type=int, default=200)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args(argv)
    if not 1 <= args.nais <= 10_000 or not 1 <= args.window <= 1024:
        parser.error("--nais 1..10000, --window 1..1024")
    if not 0 < args.seconds <= 120:
        parser.error("--seconds (0, 120]")
    result = run(
        args.src,
        args.dst,
        nais=args.nais,
        window=args.window,
        seconds=args.seconds,
        timeout=args.timeout,
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
