"""Where the appliance's added ping latency goes: cross-CPU wake-ups.

``sudo .venv/bin/python -m bench.transport.latency [--rounds 5]`` builds the appliance testbed
of ``make bench-lab`` (:func:`netlmm_lab.throughput.testbed`), then, alternating, pings MS -> CN
(300 echoes 5 ms apart, average RTT):

- ``free``: the scheduler places everything (what ``make bench-lab`` measures);
- ``same-cpu``: every process of the DMPA and DLMAP namespaces and the ping on CPU 0, so every
  wake-up on the path (TAP -> DMPA, tunnel -> DLMAP, TUN -> DLMAP, tunnel -> DMPA) is a context
  switch on a running CPU;
- ``cross-cpu``: the appliance on CPU 0, the ping (and the kernel work it drives) on CPU 1, so
  every wake-up on the path is an inter-processor wake-up of a possibly idle vCPU.

Affinity is set with ``taskset`` on the lab's own processes only (by PID, found with ``ip netns
pids`` in the lab's namespaces); the testbed is torn down at the end, on error and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys

from netlmm_lab.throughput import Testbed, default_results_dir, save, testbed
from netlmm_lab.tools import parse_ping
from netlmm_lab.topology import CN_ADDRESS

APPLIANCE = ("m1", "m2", "lm")


def ping_us(bed: Testbed, cpu: int | None) -> float | None:
    argv = ["ping", "-n", "-q", "-c", "300", "-i", "0.005", "-W", "1", str(CN_ADDRESS)]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    result = bed.lab.exec("ms", argv, timeout=60, check=False)
    parsed = parse_ping(result.stdout, result.returncode)
    return None if parsed.rtt_avg_ms is None else parsed.rtt_avg_ms * 1000


def pin(bed: Testbed, mask: str) -> None:
    for short in APPLIANCE:
        pids = subprocess.run(
            ["ip", "netns", "pids", bed.lab.ns(short)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split()
        for pid in pids:
            subprocess.run(["taskset", "-a", "-p", mask, pid], capture_output=True, timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.transport.latency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--offload", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    cases = {"free": ("0x3", None), "same-cpu": ("0x1", 0), "cross-cpu": ("0x1", 1)}
    runs: dict[str, list[float]] = {name: [] for name in cases}
    with testbed("appliance", offload=args.offload) as bed:
        for _ in range(max(1, args.rounds)):
            for name, (mask, cpu) in cases.items():
                pin(bed, mask)
                rtt = ping_us(bed, cpu)
                if rtt is not None:
                    runs[name].append(round(rtt, 1))
                print(f"{name:10} {rtt} us", flush=True)
    summary = {
        name: {"median_us": statistics.median(v), "runs": v} for name, v in runs.items() if v
    }
    print(json.dumps(summary, indent=2))
    if not args.no_save:
        report = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "offload": args.offload,
            "ping": "300 echoes 5 ms apart, MS -> CN, average RTT per run",
            "cases": summary,
        }
        path = save(report, default_results_dir(), "latency")
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
