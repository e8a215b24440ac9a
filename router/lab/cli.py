"""``netlmm lab``: the network-namespace lab.

* ``netlmm lab demo [--json] [--dialect draft|rfc5844]``: the whole story with a handover,
  then everything is torn down (what ``make demo`` runs).
* ``netlmm lab up``: build the domain, start the appliance, leave it running; prints the
  namespace prefix and how to reach each node.
* ``netlmm lab down [PREFIX]``: remove a domain left by ``lab up`` (all of them without PREFIX).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_lab_parser(sub: Any) -> None:
    lab = sub.add_parser("lab", help="the network-namespace lab: demo, up, down")
    lab.add_argument("action", choices=("demo", "up", "down"))
    lab.add_argument("prefix", nargs="?", help="with down: the lab to remove")
    lab.add_argument("--json", action="store_true", help="demo: machine-readable result")
    lab.add_argument("--dialect", choices=("draft", "rfc5844"), default="draft")
    lab.add_argument("--fastpath", choices=("auto", "compiled", "reference"), default="auto")


def lab_main(args: argparse.Namespace) -> int:
    import os

    if os.geteuid() != 0:
        print("netlmm lab: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.action == "demo":
        from router.lab.demo import demo

        return demo(as_json=args.json, dialect=args.dialect, fastpath=args.fastpath)
    if args.action == "up":
        return _up(args)
    from router.lab.topology import Lab

    removed = Lab.down(args.prefix)
    print("removed: " + (", ".join(removed) if removed else "nothing"))
    return 0


def _up(args: argparse.Namespace) -> int:
    from router.lab.configs import MobileProfile
    from router.lab.demo import NAI
    from router.lab.domain import NAMESPACE, Domain
    from router.lab.topology import Lab

    lab = Lab().start()
    domain = Domain(lab, [MobileProfile(NAI, lab.ms_mac(), "dhcp")], dialect=args.dialect)
    domain.start()
    for process in domain.processes.values():
        lab.forget(process)  # they outlive this command; lab down ends them
    prefix = lab.detach()
    print(f"lab {prefix} is up; remove it with: netlmm lab down {prefix}")
    for role, short in NAMESPACE.items():
        print(
            f"  {role:6} ip netns exec {prefix}-{short} ...   "
            f"netlmm show counters --socket {domain.configs.sockets[role]}"
        )
    print(f"  MS     ip netns exec {prefix}-ms udhcpc -i ms0 -f -s ... (MAC {lab.ms_mac()})")
    print(f"  CN     ip netns exec {prefix}-cn ping 192.0.2.100")
    return 0
