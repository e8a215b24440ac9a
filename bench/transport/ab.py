"""A/B of the appliance's data-path settings in alternating runs.

``sudo .venv/bin/python -m bench.transport.ab [--rounds 3 --seconds 4]``: per round, the
appliance testbed of ``make bench-lab`` (:func:`netlmm_lab.throughput.testbed`) with ``[node]
offload = no``, then with ``offload = yes``; in the latter, bridge netfilter on the lab's bridges
(``net.bridge.bridge-nf-call-*``, per namespace) first back on, then off (the bench's setting).
Each cell: one TCP stream h1 -> h2 and one h2 -> h1, Gbit/s. The machine is shared: only the
alternation within one invocation makes the cells comparable. JSON:
``bench/results/<date>-ab.json``.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys

from netlmm_lab.throughput import (
    Testbed,
    bridge_netfilter,
    default_results_dir,
    save,
    tcp_gbit_s,
    testbed,
)


def cell(bed: Testbed, seconds: float) -> dict[str, float]:
    return {
        "up": round(tcp_gbit_s(bed, seconds=seconds, streams=1, reverse=False), 3),
        "down": round(tcp_gbit_s(bed, seconds=seconds, streams=1, reverse=True), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.transport.ab", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {
        "offload=no, bridge_nf=off": [],
        "offload=yes, bridge_nf=on": [],
        "offload=yes, bridge_nf=off": [],
    }
    for _ in range(max(1, args.rounds)):
        with testbed("appliance", offload=False) as bed:
            runs["offload=no, bridge_nf=off"].append(cell(bed, args.seconds))
        with testbed("appliance", offload=True) as bed:
            bridge_netfilter(bed.lab, True)
            runs["offload=yes, bridge_nf=on"].append(cell(bed, args.seconds))
            bridge_netfilter(bed.lab, False)
            runs["offload=yes, bridge_nf=off"].append(cell(bed, args.seconds))
        print({name: r[-1] for name, r in runs.items()}, flush=True)
    summary = {
        name: {
            "up_median": statistics.median(r["up"] for r in cells),
            "down_median": statistics.median(r["down"] for r in cells),
            "runs": cells,
        }
        for name, cells in runs.items()
    }
    for name, entry in summary.items():
        print(f"{name:28} up {entry['up_median']:.2f}  down {entry['down_median']:.2f} Gbit/s")
    if not args.no_save:
        report = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seconds": args.seconds,
            "cases": summary,
        }
        path = save(report, default_results_dir(), "ab")
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
