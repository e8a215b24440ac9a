"""Registrations per second end to end: PBUs from a load generator over the real MH socket to
``netlmm run`` (a DLMAP in a lab namespace), PBAs counted back, with ``store = sqlite`` and
with ``store = postgresql`` (a real PostgreSQL 15, over its unix socket), beside the in-process
figure measured in the same run (bench/signaling/test_registration.py's path: decode, DLMAP,
one FULL-sync SQLite commit per batch of 256, encode).

The load: :mod:`netlmm_lab.regload` in the lab's ``tr`` namespace, one unsigned simulated DMPA
(``insecure = yes``), 200 NAIs registered then refreshed in turn, 64 PBUs in flight, 5 s per
engine. Printed: PBAs/s, p50/p99 PBA latency, the DLMAP process's CPU per PBA, and the ratios
against the goals (end to end >= 0.8x in-process on SQLite; PostgreSQL >= half of SQLite).
Beside them, not a goal: the same load in process (the generator's PBUs, a commit per 64), so
the cost of the socket, the loop and the node shows apart from that of the smaller commits.
Needs root (namespaces). One run each: ``make bench`` includes it; nothing here is a timed
assertion (every PBA must be accepted, that is all it asserts).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from bench.signaling.test_registration import BATCH, N, new_dlmap, pbu, register
from netlmm_lab.configs import MobileProfile
from netlmm_lab.domain import Domain
from netlmm_lab.postgres import PostgresServer, available
from netlmm_lab.topology import BRIDGE, DLMAP_ADDRESS, Lab
from router.adapters.store import Store
from router.wire.dialect import DRAFT
from router.wire.mh import BindingUpdate
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from tests.conftest import require

GENERATOR = IPv6Address("2001:db8:100::21")
SECONDS = 5.0
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


def in_process_rate(like_e2e: bool = False) -> tuple[float, float]:
    """The best of 3 rounds: registrations per second, and CPU microseconds per registration
    (this process's CPU time: what the rate would be with a whole core).

    ``like_e2e``: not the goal's figure but the end-to-end load itself, in process: the
    generator's PBUs (:data:`NAIS` NAIs registered then refreshed in turn) and one commit per
    :data:`WINDOW` of them (what a turn of the DLMAP gets with that many in flight). Beside
    the goal's figure it tells the cost of the path (socket, loop, node) from the cost of the
    smaller commits and the other mix of PBUs."""
    if like_e2e:
        wires, batch = generator_pbus(NAIS, N), WINDOW
    else:
        wires, batch = [pbu(i, DRAFT).encode() for i in range(1, N + 1)], BATCH
    folder = Path(tempfile.mkdtemp(prefix="netlmm-bench-"))
    best, cpu_best = 0.0, float("inf")
    for round_ in range(3):
        store = Store(folder / f"r{round_}.sqlite")
        dlmap = new_dlmap(DRAFT)
        began, cpu = time.perf_counter(), time.process_time()
        assert register(dlmap, store, wires, DRAFT, batch) == N
        best = max(best, N / (time.perf_counter() - began))
        cpu_best = min(cpu_best, (time.process_time() - cpu) / N * 1e6)
        store.close()
    return best, cpu_best


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end(store_keys: dict[str, str]) -> dict[str, Any]:
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
        domain.start(roles=("dlmap",))
        pid = domain.processes["dlmap"].pid
        cpu_before = _cpu_seconds(pid)
        argv = [sys.executable, "-m", "netlmm_lab.regload", "--src", str(GENERATOR)]
        argv += ["--dst", str(DLMAP_ADDRESS), "--nais", str(NAIS), "--window", str(WINDOW)]
        argv += ["--seconds", str(SECONDS)]
        done = lab.exec("tr", argv, timeout=SECONDS + 60)
        cpu = _cpu_seconds(pid) - cpu_before
        result: dict[str, Any] = json.loads(done.stdout)
        counters = domain.ask("dlmap", "counters")["node"]
        result["dlmap_cpu_s"] = round(cpu, 3)
        result["dlmap_cpu_us_per_pba"] = round(cpu / max(1, result["answered"]) * 1e6, 1)
        commits = int(counters.get("store.commits", 0))
        result["pbas_per_commit"] = round(result["answered"] / max(1, commits), 1)
        domain.stop()
        return result


@pytest.fixture(scope="module")
def root_only() -> None:
    require(os.geteuid() == 0, "needs root for network namespaces")


def test_registrations_end_to_end(root_only: None) -> None:
    why = available()
    require(why is None, f"PostgreSQL: {why}")
    in_process, in_process_cpu = in_process_rate()
    like, like_cpu = in_process_rate(like_e2e=True)
    sqlite = end_to_end({})
    server = PostgresServer().start()
    try:
        server.create_database("bench")
        postgresql = end_to_end({"store": "postgresql", "store_dsn": server.socket_dsn("bench")})
    finally:
        server.stop()
    print(json.dumps({"sqlite": sqlite, "postgresql": postgresql}))
    for result in (sqlite, postgresql):
        assert result["answered"] > 0 and result["accepted"] == result["answered"], result
    figures = {
        "in_process_draft_per_s": round(in_process),
        "in_process_cpu_us_per_registration": round(in_process_cpu, 1),
        "e2e_sqlite": sqlite,
        "e2e_postgresql": postgresql,
        "ratio_e2e_sqlite_to_in_process": round(sqlite["pbas_per_s"] / in_process, 3),
        "ratio_postgresql_to_sqlite": round(postgresql["pbas_per_s"] / sqlite["pbas_per_s"], 3),
        # CPU per PBA against CPU per registration: the ratio with a whole core for each
        "cpu_ratio_e2e_sqlite_to_in_process": round(
            in_process_cpu / sqlite["dlmap_cpu_us_per_pba"], 3
        ),
        "cpu_ratio_postgresql_to_sqlite": round(
            sqlite["dlmap_cpu_us_per_pba"] / postgresql["dlmap_cpu_us_per_pba"], 3
        ),
        # not a goal: the end-to-end load in process (see in_process_rate), and the path's part
        "in_process_like_e2e_per_s": round(like),
        "in_process_like_e2e_cpu_us": round(like_cpu, 1),
        "ratio_e2e_sqlite_to_like_e2e": round(sqlite["pbas_per_s"] / like, 3),
        "cpu_ratio_e2e_sqlite_to_like_e2e": round(like_cpu / sqlite["dlmap_cpu_us_per_pba"], 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    RESULTS.update(figures)
    print("\nregistrations end to end", json.dumps(figures, indent=1))
