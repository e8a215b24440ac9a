"""The handover interruption with each data-path tier, side by side in one session:
``sudo .venv/bin/python -m bench.lab.handover_tiers [--rounds 2] [--handovers 3]``.

Per round, a lab with ``[node] datapath = cython`` then one with ``kernel``; in each, a DHCP MS
moves between the two DMPAs ``--handovers`` times (the cell reports the association, as the
demo does) under a UDP probe stream every 5 ms; the interruption is the longest gap between two
echoes less the 5 ms spacing (``UdpStreamResult.interruption_ms``). Prints each, the medians,
the kernel tier's median less the Cython tier's and the load average before and after, as JSON.
Issue 14's goal: the kernel tier's median within 10 ms of the Cython tier's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import UdpStream
from netlmm_lab.topology import DMPA_ADDRESSES, Lab

NAI = "ms@example.org"


def handovers(datapath: str, count: int) -> list[float]:
    gaps = []
    with Lab(mobiles=1) as lab:
        domain = Domain(
            lab, [MobileProfile(NAI, lab.ms_mac("ms"), "dhcp", None)], datapath=datapath
        )
        domain.start()
        try:
            DhcpClient(lab).once(tries=10)
            to = 2
            for _ in range(count):
                stream = UdpStream(lab, interval=0.005, count=600)
                stream.start()
                time.sleep(0.5)  # traffic before the move
                lab.handover(to)
                domain.associated(f"dmpa{to}", lab.ms_mac())
                served = str(DMPA_ADDRESSES[to])
                wait_until(lambda: (domain.binding(NAI) or {}).get("dmpa") == served, 10, "moved")  # noqa: B023
                time.sleep(1.0)  # traffic after it
                gaps.append(stream.stop().interruption_ms)
                to = 3 - to
        finally:
            domain.stop()
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--handovers", type=int, default=3)
    args = parser.parse_args()
    gaps: dict[str, list[float]] = {"cython": [], "kernel": []}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for datapath in gaps:
            gaps[datapath] += handovers(datapath, args.handovers)
            print(datapath, gaps[datapath], flush=True)
    medians = {datapath: statistics.median(values) for datapath, values in gaps.items()}
    result = {
        "interruption_ms": gaps,
        "median_ms": medians,
        "kernel_minus_cython_ms": round(medians["kernel"] - medians["cython"], 3),
        "loadavg_before_after": [load_before, os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
