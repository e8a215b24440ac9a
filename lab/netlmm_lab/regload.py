"""A registration load generator: PBUs over a real raw MH socket to a running ``netlmm run``
DLMAP, PBAs counted back (the end-to-end signaling benchmark, and the HA failover tests).

``python -m netlmm_lab.regload --src ADDR --dst ADDR`` (run inside a lab namespace that has
``--src``) plays one DMPA (an ``insecure = yes`` peer of the DLMAP: unsigned, so the
generator's own CPU stays small) with ``--nais`` MSs: it registers each once, then refreshes
them in turn, keeping ``--window`` PBUs in flight for ``--seconds``; a PBU whose PBA has not
come back after ``--timeout`` is given up (counted) and its slot reused. It prints one JSON
object: PBUs sent, PBAs back, accepted (status 0), refused (any other status), timed out, the
rate of PBAs, and the PBA latency percentiles (send to receive, microseconds). The PBUs are
encoded before the clock starts (one template per MS; the sequence number is patched in).

With ``--src2`` it plays a second DMPA too, and the MSs **hand over** between the two as a
real handover does: each MS's PBUs go two rounds from ``--src`` (registration, refresh), then
two rounds from ``--src2`` (handover, refresh), and so on; the new DMPA asks with HoA 0.0.0.0
(it does not know the address yet) and each DMPA's BU sequence numbers are its own.
``handovers`` counts the handovers the DLMAP accepted (an MS's PBA of status 0 from the other
DMPA than its previous accepted one), ``handovers_sent`` the handover PBUs sent. The
generator answers the DLMAP's Binding Revocation Indications (a BRA echoing its options), as
the old DMPA does, so the held PBA of a handover is released at once, and its Heartbeat
Requests (a response with our Restart Counter; a new active DLMAP sends one to each peer at its
takeover), as :class:`netlmm_lab.loadgen.LoadGenerator` does (:func:`netlmm_lab.loadgen.answer`).

``--record`` decodes every accepted PBA and reports the (NAI, HoA) pairs accepted, with any
NAI given two addresses and any address given to two NAIs. ``--heartbeat S`` sends an RFC 5847
Heartbeat from each sender every S seconds and reports the Restart Counters the DLMAP answered
with (one value: it never looked restarted). The longest stretch without any PBA back is
reported with its wall-clock bounds (a failover's "kill -> first PBA answered"); a silence
that lasted to the end of the run counts too (``silence_ended_by_pba`` false).
"""

from __future__ import annotations

import argparse
import json
import select
import struct
import sys
import time
from ipaddress import IPv4Address, IPv6Address
from socket import socket

from netlmm_lab.loadgen import answer, restart_counter
from router.adapters.sockets import open_mh_socket
from router.wire.dialect import DRAFT
from router.wire.errors import DecodeError
from router.wire.mh import (
    BindingAck,
    BindingRevocationIndication,
    BindingUpdate,
    Heartbeat,
    decode_message,
)
from router.wire.mh_options import MobileNodeIdentifier, RestartCounter, SeedIPv4HomeAddress

SEQUENCES = 1 << 16
#: MH: proto, length, type, reserved, checksum (6 bytes), then a PBA's status, flags, sequence;
#: a BU's sequence is at 6.
STATUS_AT, SEQUENCE_AT, BU_SEQUENCE_AT = 6, 8, 6
BINDING_ACK, HEARTBEAT, BINDING_REVOCATION = 6, 13, 16
BRI_TYPE = 1
HEARTBEAT_RESPONSE = 0x1
U16 = struct.Struct("!H")
#: A handover generator: two rounds of an MS's PBUs from one DMPA, then two from the other.
ROUNDS_PER_DMPA = 2


def encode_templates(nais: int, lifetime: int) -> list[bytes]:
    """One PBU per MS (sequence 0: patched per send, with two DMPAs)."""
    seed = SeedIPv4HomeAddress(0, IPv4Address(0))
    ids = [MobileNodeIdentifier.from_nai(f"load{i}@bench.example") for i in range(nais)]
    return [
        BindingUpdate(0, DRAFT.pbu_flags(), lifetime, (ids[i], seed)).encode() for i in range(nais)
    ]


def encode_all(templates: list[bytes]) -> list[bytes]:
    """One DMPA: one PBU per sequence number, sequence ``s`` for MS ``s % nais`` (no work per
    send but the send itself: the benchmark's generator must stay cheap)."""
    wires = []
    for seq in range(SEQUENCES):
        wire = bytearray(templates[seq % len(templates)])
        U16.pack_into(wire, BU_SEQUENCE_AT, seq)
        wires.append(bytes(wire))
    return wires


class _Sender:
    """One simulated DMPA: its socket and its own BU sequence numbers."""

    def __init__(self, address: IPv6Address) -> None:
        self.address = address
        self.sock: socket = open_mh_socket(address, rcvbuf=8 << 20)
        self.sock.setblocking(False)
        self.sequence = 0
        self.heartbeat = 0

    def next_sequence(self) -> int:
        self.sequence = (self.sequence + 1) % SEQUENCES
        return self.sequence


def _percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))] * 1e6, 1)


def _accepted_pair(data: bytes) -> tuple[str, str] | None:
    try:
        message = decode_message(data, DRAFT)
    except DecodeError:
        return None
    if not isinstance(message, BindingAck):
        return None
    nai = message.find(MobileNodeIdentifier)
    seed = message.find(SeedIPv4HomeAddress)
    if nai is None or seed is None:
        return None
    return nai.identifier.decode("utf-8", "replace"), str(seed.address)


def run(
    src: IPv6Address,
    dst: IPv6Address,
    *,
    nais: int,
    window: int,
    seconds: float,
    timeout: float,
    lifetime: int = 900,
    src2: IPv6Address | None = None,
    record: bool = False,
    heartbeat: float = 0.0,
    first_sequence: int = 1,
) -> dict[str, object]:
    templates = encode_templates(nais, lifetime)
    wires = encode_all(templates) if src2 is None else []
    senders = [_Sender(src)] + ([_Sender(src2)] if src2 is not None else [])
    # A later run against the same DLMAP goes on after the last (draft BU sequence rule).
    senders[0].sequence = (first_sequence - 1) % SEQUENCES
    by_sock = {s.sock: s for s in senders}
    target = (str(dst), 0)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sent = answered = accepted = timeouts = errors = late = handovers = handovers_sent = 0
    bris = bras = heartbeats_answered = heartbeat_requests = 0
    counter = restart_counter(time.time())  # ours, in the responses to the DLMAP's requests
    restart_counters: set[int] = set()
    pairs: dict[str, set[str]] = {}
    in_flight: dict[int, float] = {}  # sender << 16 | sequence -> sent at
    # two DMPAs: the MS of each PBU in flight (same key), and the sender of each MS's last
    # accepted PBA (a status-0 PBA from the other one is an accepted handover)
    ms_in_flight: dict[int, int] = {}
    accepted_at: dict[int, int] = {}
    given_up: set[int] = set()
    pbus = 0  # PBUs chosen so far (two DMPAs)
    clock = time.perf_counter
    began = clock()
    wall_began = time.time()
    end = began + seconds
    last_answer = began
    silence = (0.0, began, began)  # longest stretch without a PBA: length, from, to
    next_heartbeat = began + heartbeat if heartbeat > 0 else float("inf")

    def send_one() -> None:
        nonlocal pbus, sent, errors, handovers_sent
        if wires:  # one DMPA: sequence s is for MS s % nais
            index, sender = 0, senders[0]
            seq = sender.next_sequence()
            wire: bytes | bytearray = wires[seq]
            ms: int | None = None  # not followed: no handovers
        else:  # two: PBU k is for MS k % nais, in round k // nais
            k = pbus
            pbus += 1
            round_ = k // nais
            index = (round_ // ROUNDS_PER_DMPA) % len(senders)
            if round_ % ROUNDS_PER_DMPA == 0 and round_ > 0:
                handovers_sent += 1
            sender = senders[index]
            seq = sender.next_sequence()
            ms = k % nais
            wire = bytearray(templates[ms])
            U16.pack_into(wire, BU_SEQUENCE_AT, seq)
        now = clock()
        try:
            sender.sock.sendto(wire, target)
        except OSError:
            errors += 1
            return
        in_flight[index << 16 | seq] = now
        if ms is not None:
            ms_in_flight[index << 16 | seq] = ms
        sent += 1

    def on_message(sender: _Sender, index: int, data: bytes, peer: str) -> None:
        nonlocal answered, accepted, late, bris, bras, heartbeats_answered, last_answer, silence
        nonlocal handovers, heartbeat_requests
        kind = data[2]
        if kind == BINDING_ACK:
            key = index << 16 | U16.unpack_from(data, SEQUENCE_AT)[0]
            started = in_flight.pop(key, None)
            ms = ms_in_flight.pop(key, None) if ms_in_flight else None  # one DMPA: none
            if started is None:
                late += key in given_up
                return
            got = clock()
            if got - last_answer > silence[0]:
                silence = (got - last_answer, last_answer, got)
            last_answer = got
            answered += 1
            status = data[STATUS_AT]
            statuses[status] = statuses.get(status, 0) + 1
            if status == 0:
                accepted += 1
                if ms is not None:
                    handovers += accepted_at.get(ms, index) != index
                    accepted_at[ms] = index
                if record and (pair := _accepted_pair(data)) is not None:
                    pairs.setdefault(pair[0], set()).add(pair[1])
            latencies.append(got - started)
            if got < end:
                send_one()
        elif kind == BINDING_REVOCATION and len(data) > 6 and data[6] == BRI_TYPE:
            try:
                bri = decode_message(data, DRAFT)
            except DecodeError:
                return
            if not isinstance(bri, BindingRevocationIndication):
                return
            bris += 1
            bras += reply(sender, answer(bri, counter), peer)
        elif kind == HEARTBEAT:
            try:
                beat = decode_message(data, DRAFT)
            except DecodeError:
                return
            if not isinstance(beat, Heartbeat):
                return
            if beat.flags & HEARTBEAT_RESPONSE:
                heartbeats_answered += 1
                theirs = beat.find(RestartCounter)
                if theirs is not None:
                    restart_counters.add(theirs.counter)
            else:  # the DLMAP's request (at every interval, and at a takeover): answer it
                heartbeat_requests += 1
                reply(sender, answer(beat, counter), peer)

    def reply(sender: _Sender, data: bytes | None, peer: str) -> bool:
        if data is None:
            return False
        try:
            sender.sock.sendto(data, (peer, 0))
        except OSError:
            return False
        return True

    for _ in range(window):
        send_one()
    socks = [s.sock for s in senders]
    for _ in range(100_000_000):  # bounded: ends at ``end``
        now = clock()
        if now >= end:
            break
        if now >= next_heartbeat:
            next_heartbeat = now + heartbeat
            for sender in senders:
                sender.heartbeat += 1
                beat = Heartbeat(sender.heartbeat, 0).encode()
                try:
                    sender.sock.sendto(beat, target)
                except OSError:
                    errors += 1
        wait = min(0.05, end - now, max(0.0, next_heartbeat - now))
        readable, _, _ = select.select(socks, [], [], wait)
        for sock in readable:
            sender = by_sock[sock]
            index = senders.index(sender)
            for _ in range(1024):
                try:
                    data, (peer, *_rest) = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                if len(data) >= 12:
                    on_message(sender, index, data, peer)
        now = clock()
        stale = [key for key, t in in_flight.items() if now - t > timeout]
        for key in stale:
            del in_flight[key]
            ms_in_flight.pop(key, None)
            given_up.add(key)
            timeouts += 1
            send_one()
    stopped = clock()
    elapsed = stopped - began
    # the silence after the last PBA counts too (a DLMAP that never answered again after a
    # fault): it ends with the run, not with a PBA
    ended_by_pba = True
    if stopped - last_answer > silence[0]:
        silence = (stopped - last_answer, last_answer, stopped)
        ended_by_pba = False
    for sender in senders:
        sender.sock.close()
    latencies.sort()
    result: dict[str, object] = {
        "seconds": round(elapsed, 3),
        "nais": nais,
        "window": window,
        "sent": sent,
        "last_sequence": senders[0].sequence,
        "answered": answered,
        "accepted": accepted,
        "refused": answered - accepted,
        "timeouts": timeouts,
        "late": late,
        "send_errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "pbas_per_s": round(answered / elapsed, 1),
        "p50_us": _percentile(latencies, 0.50),
        "p99_us": _percentile(latencies, 0.99),
        "max_us": _percentile(latencies, 1.0),
        "longest_silence_s": round(silence[0], 3),
        "silence_from": round(wall_began + silence[1] - began, 3),
        "silence_to": round(wall_began + silence[2] - began, 3),
        "silence_ended_by_pba": ended_by_pba,
    }
    if src2 is not None:
        result.update(handovers=handovers, handovers_sent=handovers_sent, bris=bris, bras_sent=bras)
    if heartbeat > 0:
        result.update(
            heartbeats_answered=heartbeats_answered, restart_counters=sorted(restart_counters)
        )
    result.update(heartbeat_requests_answered=heartbeat_requests)
    if record:
        by_hoa: dict[str, set[str]] = {}
        for nai, hoas in pairs.items():
            for hoa in hoas:
                by_hoa.setdefault(hoa, set()).add(nai)
        result.update(
            accepted_pairs=sorted([nai, hoa] for nai, hoas in pairs.items() for hoa in hoas),
            nais_with_two_addresses=sorted(n for n, h in pairs.items() if len(h) > 1),
            addresses_with_two_nais=sorted(h for h, n in by_hoa.items() if len(n) > 1),
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netlmm_lab.regload")
    parser.add_argument("--src", type=IPv6Address, required=True)
    parser.add_argument("--src2", type=IPv6Address, help="a second DMPA: the MSs hand over")
    parser.add_argument("--dst", type=IPv6Address, required=True)
    parser.add_argument("--nais", type=int, default=200)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--record", action="store_true", help="report the accepted pairs")
    parser.add_argument("--heartbeat", type=float, default=0.0, help="seconds between beats")
    parser.add_argument(
        "--first-sequence", type=int, default=1, help="the first BU sequence number (of --src)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.nais <= 10_000 or not 1 <= args.window <= 1024:
        parser.error("--nais 1..10000, --window 1..1024")
    if args.window >= args.nais and args.src2 is not None:
        parser.error("--window below --nais with --src2 (one PBU in flight per MS)")
    if not 0 < args.seconds <= 120:
        parser.error("--seconds (0, 120]")
    if not 0 <= args.first_sequence < SEQUENCES:
        parser.error(f"--first-sequence 0..{SEQUENCES - 1}")
    if not (args.heartbeat == 0 or 0.05 <= args.heartbeat <= 60):
        parser.error("--heartbeat 0 or 0.05..60")
    result = run(
        args.src,
        args.dst,
        nais=args.nais,
        window=args.window,
        seconds=args.seconds,
        timeout=args.timeout,
        src2=args.src2,
        record=args.record,
        heartbeat=args.heartbeat,
        first_sequence=args.first_sequence,
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
