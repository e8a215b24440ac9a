"""Registrations per second end to end: PBUs from a load generator over the real MH socket to
``netlmm run`` (a DLMAP in a lab namespace), PBAs counted back, with ``store = sqlite`` and
with ``store = postgresql`` (a real PostgreSQL 15, over its unix socket), beside the in-process
figure measured in the same run (bench/signaling/test_registration.py's path: decode, DLMAP,
one FULL-sync SQLite commit per batch of 256, encode).

The load: :mod:`netlmm_lab.regload` in the lab's ``tr`` namespace, one unsigned simulated DMPA
(``insecure = yes``), 200 NAIs registered then refreshed in turn, 64 PBUs in flight, 5 s a
round, :data:`ROUNDS` rounds per engine against one ``netlmm run``. Before each SQLite round the
in-process figure runs for as long (the goal's rounds back to back for 5 s, a fresh DLMAP and
store each), so each pair sees the machine in the same state: this shared VM's speed drifts by
half within minutes. The goal's statistic is paired: the median over the rounds of the
end-to-end round's rate over the in-process rate just before it, both 5 s averages. Beside it,
the statistic of the runs before 2026-12-07 evening (no longer the goal's): the best end-to-end
round over the best of the half-second in-process rounds, biased against end to end, since the
best half-second round of a window runs 5-17 % faster than the window's average
(bench/README.md). Printed: PBAs/s, p50/p99 PBA latency, the DLMAP process's CPU per PBA, and
the ratios against the goals (end to end >= 0.8x in-process on SQLite; PostgreSQL >= half of
SQLite). Beside them, not a goal: the same load in process (the generator's PBUs, a commit per
64, and a commit per 256), so the cost of the socket, the loop and the node shows apart from
that of the smaller commits and that of the other mix of PBUs (``ladder_cpu_us``: CPU per PBU,
step by step). The in-process rounds run with the GC settings the appliance applies
(``tune_gc``); the lab's bridges run without bridge netfilter, as in the lab's data-path bench
(``bridge_netfilter``). Needs root (namespaces). ``make bench`` includes it; nothing here is a
timed assertion (every PBA must be accepted, that is all it asserts).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from bench.signaling.test_registration import BATCH, N, new_dlmap, pbu, register
from netlmm_lab.configs import MobileProfile
from netlmm_lab.domain import Domain
from netlmm_lab.postgres import PostgresServer, available
from netlmm_lab.throughput import bridge_netfilter
from netlmm_lab.topology import BRIDGE, DLMAP_ADDRESS, Lab
from router.adapters.store import Store
from router.app.tuning import tune_gc
from router.wire.dialect import DRAFT
from router.wire.mh import BindingUpdate
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from tests.conftest import require

GENERATOR = IPv6Address("2001:db8:100::21")
SECONDS = 5.0
ROUNDS = 5
WINDOW = 64
NAIS = 200
RESULTS: dict[str, Any] = {}


def generator_pbus(nais: int, count: int) -> list[bytes]:
    """The PBUs the generator sends, in order (as netlmm_lab.regload builds them, here so the
    bench does not lean on its internals): sequence ``s`` (from 1) for MS ``s % nais``."""
    seed = SeedIPv4HomeAddress(0, IPv4Address(0))
    ids = [MobileNodeIdentifier.from_nai(f"load{i}@bench.example") for i in range(nais)]
    flags = DRAFT.pbu_flags()
    return [
        BindingUpdate(s % 65536, flags, 900, (ids[s % nais], seed)).encode()
        for s in range(1, count + 1)
    ]


def in_process_round(
    folder: Path, like_e2e: bool = False, batch: int | None = None
) -> tuple[float, float]:
    """One round: registrations per second, and CPU microseconds per registration (this
    process's CPU time: what the rate would be with a whole core).

    ``like_e2e``: not the goal's figure but the end-to-end load itself, in process: the
    generator's PBUs (:data:`NAIS` NAIs registered then refreshed in turn) and one commit per
    :data:`WINDOW` of them (what a turn of the DLMAP gets with that many in flight). Beside
    the goal's figure it tells the cost of the path (socket, loop, node) from the cost of the
    smaller commits and the other mix of PBUs. ``batch``: PBUs a commit, if not the default
    (the end-to-end load with the goal's commits of 256: the mix apart from the commit size)."""
    if like_e2e:
        wires, default = generator_pbus(NAIS, N), WINDOW
    else:
        wires, default = [pbu(i, DRAFT).encode() for i in range(1, N + 1)], BATCH
    batch = batch or default
    path = folder / f"round{len(list(folder.iterdir()))}.sqlite"
    store = Store(path)
    dlmap = new_dlmap(DRAFT)
    began, cpu = time.perf_counter(), time.process_time()
    assert register(dlmap, store, wires, DRAFT, batch) == N
    rate = N / (time.perf_counter() - began)
    cpu_us = (time.process_time() - cpu) / N * 1e6
    store.close()
    return rate, cpu_us


def in_process_span(folder: Path, seconds: float) -> tuple[float, float]:
    """The goal's in-process figure: its rounds back to back for ``seconds`` (a fresh DLMAP and
    store each), as long as an end-to-end round: registrations per second over the rounds' own
    time, and CPU microseconds per registration. (On this shared VM the best of a few
    half-second rounds runs 5-17 % faster than the same rounds taken together over 5 s, and an
    end-to-end round is a 5 s average: bench/README.md.)"""
    rounds: list[tuple[float, float]] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds and len(rounds) < 100:
        rounds.append(in_process_round(folder))
        for path in folder.iterdir():  # the round's SQLite files: the disk stays as it was
            path.unlink()
    busy = sum(N / rate for rate, _ in rounds)
    return len(rounds) * N / busy, sum(cpu for _, cpu in rounds) / len(rounds)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end(store_keys: dict[str, str], between: Callable[[], None]) -> list[dict[str, Any]]:
    """:data:`ROUNDS` runs of the generator against one ``netlmm run``, ``between()`` called
    before each (the in-process rounds, so both sides see the machine in the same state)."""
    with Lab() as lab:
        domain = Domain(
            lab,
            [MobileProfile("ms@example.org", lab.ms_mac(), "dhcp")],
            extra_peers=(str(GENERATOR),),
            pool="192.0.2.2-192.0.2.250",  # room for the 200 NAIs
        )
        text = domain.configs.dlmap.read_text()
        keys = "".join(f"{k} = {v}\n" for k, v in store_keys.items())
        text = text.replace("[node]\n", "[node]\nlog_level = warning\n" + keys, 1)
        text += "[limits]\npbu_new_nai_rate = 0\n"  # 200 new NAIs at once from one peer
        domain.configs.dlmap.write_text(text.replace("log_level = info\n", ""))
        lab.exec("tr", ["sysctl", "-q", "-w", f"net.ipv6.conf.{BRIDGE}.disable_ipv6=0"])
        lab.exec("tr", ["ip", "addr", "add", f"{GENERATOR}/64", "dev", BRIDGE, "nodad"])
        # As the lab's data-path bench does: a host with br_netfilter loaded would run every
        # frame on the transport bridge through the netfilter hooks, and the DLMAP's sendto
        # pays for its PBA's trip to the generator (3 % of its CPU under perf): a cost of the
        # lab's bridge, not of the path.
        bridge_netfilter(lab, False)
        domain.start(roles=("dlmap",))
        pid = domain.processes["dlmap"].pid
        results: list[dict[str, Any]] = []
        first = 1
        for _ in range(ROUNDS):
            between()
            commits_before = _commits(domain)
            cpu_before = _cpu_seconds(pid)
            argv = [sys.executable, "-m", "netlmm_lab.regload", "--src", str(GENERATOR)]
            argv += ["--dst", str(DLMAP_ADDRESS), "--nais", str(NAIS), "--window", str(WINDOW)]
            argv += ["--seconds", str(SECONDS), "--first-sequence", str(first)]
            done = lab.exec("tr", argv, timeout=SECONDS + 60)
            cpu = _cpu_seconds(pid) - cpu_before
            result: dict[str, Any] = json.loads(done.stdout)
            first = (result["last_sequence"] + 1) % 65536
            answered = max(1, result["answered"])
            result["dlmap_cpu_s"] = round(cpu, 3)
            result["dlmap_cpu_us_per_pba"] = round(cpu / answered * 1e6, 1)
            commits = _commits(domain) - commits_before
            result["pbas_per_commit"] = round(result["answered"] / max(1, commits), 1)
            results.append(result)
        domain.stop()
        return results


def _commits(domain: Domain) -> int:
    return int(domain.ask("dlmap", "counters")["node"].get("store.commits", 0))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


@pytest.fixture(autouse=True, scope="module")
def appliance_gc() -> Iterator[None]:
    """The in-process rounds run with the GC settings ``netlmm run`` applies at start-up."""
    saved = gc.get_threshold()
    tune_gc()
    yield
    gc.unfreeze()
    gc.set_threshold(*saved)


@pytest.fixture(scope="module")
def root_only() -> None:
    require(os.geteuid() == 0, "needs root for network namespaces")


def test_registrations_end_to_end(root_only: None) -> None:
    why = available()
    require(why is None, f"PostgreSQL: {why}")
    goal: list[tuple[float, float]] = []  # the goal's in-process figure, a round each
    like: list[tuple[float, float]] = []  # the end-to-end load in process, a round each
    like_256: list[tuple[float, float]] = []  # the same, a commit per 256 as the goal's
    span: list[tuple[float, float]] = []  # the goal's rounds back to back for SECONDS
    with tempfile.TemporaryDirectory(prefix="netlmm-bench-") as folder:

        def in_process() -> None:
            goal.append(in_process_round(Path(folder)))
            like.append(in_process_round(Path(folder), like_e2e=True))
            like_256.append(in_process_round(Path(folder), like_e2e=True, batch=BATCH))
            with tempfile.TemporaryDirectory(prefix="netlmm-span-") as rounds:
                span.append(in_process_span(Path(rounds), SECONDS))

        sqlite = end_to_end({}, in_process)
        server = PostgresServer().start()
        try:
            server.create_database("bench")
            dsn = server.socket_dsn("bench")
            postgresql = end_to_end({"store": "postgresql", "store_dsn": dsn}, lambda: None)
        finally:
            server.stop()
    for result in (*sqlite, *postgresql):
        assert result["answered"] > 0 and result["accepted"] == result["answered"], result
    best_sqlite = max(sqlite, key=lambda r: r["pbas_per_s"])
    best_postgresql = max(postgresql, key=lambda r: r["pbas_per_s"])
    in_process_best = max(rate for rate, _ in goal)
    in_process_cpu = min(cpu for _, cpu in goal)
    like_best, like_cpu = max(rate for rate, _ in like), min(cpu for _, cpu in like)
    like_256_best, like_256_cpu = max(r for r, _ in like_256), min(c for _, c in like_256)
    sqlite_cpu = min(r["dlmap_cpu_us_per_pba"] for r in sqlite)
    postgresql_cpu = min(r["dlmap_cpu_us_per_pba"] for r in postgresql)

    def rates(results: list[dict[str, Any]]) -> list[float]:
        return [r["pbas_per_s"] for r in results]

    # The goal's statistic: each end-to-end round over the in-process rate just before it.
    paired = [r["pbas_per_s"] / rate for r, (rate, _) in zip(sqlite, span, strict=True)]
    figures = {
        "rounds": ROUNDS,
        "statistic": (
            "goal: median over the rounds of the end-to-end round / the in-process rounds back "
            "to back for as long just before it; beside: best of the rounds on every side"
        ),
        "ratio_e2e_sqlite_to_in_process": round(_median(paired), 3),
        "ratio_e2e_sqlite_to_in_process_rounds": [round(ratio, 3) for ratio in paired],
        "in_process_draft_per_s_over_round_length_rounds": [round(rate) for rate, _ in span],
        "in_process_draft_per_s": round(in_process_best),
        "in_process_draft_per_s_rounds": [round(rate) for rate, _ in goal],
        "in_process_cpu_us_per_registration": round(in_process_cpu, 1),
        "e2e_sqlite": best_sqlite,
        "e2e_sqlite_per_s_rounds": rates(sqlite),
        "e2e_sqlite_cpu_us_rounds": [r["dlmap_cpu_us_per_pba"] for r in sqlite],
        "e2e_postgresql": best_postgresql,
        "e2e_postgresql_per_s_rounds": rates(postgresql),
        "e2e_postgresql_cpu_us_rounds": [r["dlmap_cpu_us_per_pba"] for r in postgresql],
        # the earlier runs' statistic (to 2026-12-07): best over the best half-second round
        "ratio_best_e2e_sqlite_to_best_half_second_round": round(
            best_sqlite["pbas_per_s"] / in_process_best, 3
        ),
        "ratio_e2e_sqlite_to_in_process_medians": round(
            _median(rates(sqlite)) / _median([rate for rate, _ in goal]), 3
        ),
        "ratio_postgresql_to_sqlite": round(
            best_postgresql["pbas_per_s"] / best_sqlite["pbas_per_s"], 3
        ),
        "ratio_postgresql_to_sqlite_medians": round(
            _median(rates(postgresql)) / _median(rates(sqlite)), 3
        ),
        # CPU per PBA against CPU per registration: the ratio with a whole core for each
        "cpu_ratio_e2e_sqlite_to_in_process": round(in_process_cpu / sqlite_cpu, 3),
        "cpu_ratio_postgresql_to_sqlite": round(sqlite_cpu / postgresql_cpu, 3),
        # the ladder from the goal's figure to end to end, CPU per PBU, each the best round:
        # the goal's load -> the generator's mix (commits of 256) -> its commits of 64 (what a
        # turn gets with 64 in flight) -> over the socket, the loop and the node
        "ladder_cpu_us": {
            "goal_in_process": round(in_process_cpu, 1),
            "e2e_mix_commit_256": round(like_256_cpu, 1),
            "e2e_mix_commit_64": round(like_cpu, 1),
            "e2e_sqlite": sqlite_cpu,
        },
        # not a goal: the end-to-end load in process (see in_process_round), and the path's part
        "in_process_like_e2e_per_s": round(like_best),
        "in_process_like_e2e_cpu_us": round(like_cpu, 1),
        "in_process_like_e2e_commit_256_per_s": round(like_256_best),
        "ratio_e2e_sqlite_to_like_e2e": round(best_sqlite["pbas_per_s"] / like_best, 3),
        "cpu_ratio_e2e_sqlite_to_like_e2e": round(like_cpu / sqlite_cpu, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    RESULTS.update(figures)
    print("\nregistrations end to end", json.dumps(figures, indent=1))
