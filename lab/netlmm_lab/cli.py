"""``netlmm lab``: the network-namespace lab.

* ``netlmm lab demo [--json] [--dialect draft|rfc5844] [--plot PNG]``: the whole story with a
  handover and a plot of it, then everything is torn down (what ``make demo`` runs).
* ``netlmm lab up``: build the domain, start the appliance, leave it running; prints the
  namespace prefix and how to reach each node.
* With both: embedded defaults (the DLMAP's built-in DHCP server, the DMPAs' local profiles);
  ``--dhcp kea|dnsmasq`` relays DHCP to that server (in the CN's namespace), ``--aaa radius``
  makes the DMPAs ask FreeRADIUS (in the DLMAP's namespace); ``demo --auth 8021x`` has the MS
  authenticate by 802.1X (:mod:`netlmm_lab.dot1x`) at each DMPA, the handover included.
* ``netlmm lab bench [--variants kernel,tayga,appliance] [--runs 3]``: data-path throughput of
  kernel forwarding, a tayga pair and the appliance side by side (iperf3, ping), a table and a
  JSON file under ``bench/results/`` (what ``make bench-lab`` runs; see
  :mod:`netlmm_lab.throughput`).
* ``netlmm lab fuzz [--inputs N] [--rate R] [--seed S]``: a fuzz campaign against a running
  DLMAP and DMPA while an MS pings the CN (what ``make fuzz`` runs; :mod:`netlmm_lab.fuzz`).
* ``netlmm lab soak [--minutes M] [--mss N]``: simulated MSs from a load generator plus real
  ones, memory and fds sampled, the binding cache checked (what ``make soak`` runs;
  :mod:`netlmm_lab.soak`).
* ``netlmm lab down [PREFIX]``: remove a domain left by ``lab up`` (all of them without PREFIX).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_lab_parser(sub: Any) -> None:
    lab = sub.add_parser("lab", help="the network-namespace lab: demo, up, down, bench, fuzz, soak")
    lab.add_argument("action", choices=("demo", "up", "down", "bench", "fuzz", "soak"))
    lab.add_argument("prefix", nargs="?", help="with down: the lab to remove")
    lab.add_argument("--json", action="store_true", help="demo: machine-readable result")
    lab.add_argument(
        "--no-association-report",
        dest="report_association",
        action="store_false",
        help="demo: DMPA 2 is not told of the MS's arrival (netlmm attach); it waits for a frame",
    )
    lab.add_argument(
        "--plot",
        default="netlmm-demo-handover.png",
        help="demo: where to save the handover plot (PNG); '' for none",
    )
    lab.add_argument("--dialect", choices=("draft", "rfc5844"), default="draft")
    lab.add_argument("--fastpath", choices=("auto", "compiled", "reference"), default="auto")
    lab.add_argument(
        "--dhcp",
        choices=("builtin", "kea", "dnsmasq"),
        default="builtin",
        help="demo/up: the DLMAP's built-in DHCP server, or relay to a real Kea or dnsmasq",
    )
    lab.add_argument(
        "--aaa",
        choices=("local", "radius"),
        default="local",
        help="demo/up: the DMPAs' local profiles, or a real FreeRADIUS",
    )
    lab.add_argument(
        "--ha",
        action="store_true",
        help="up: an active/standby DLMAP pair (PostgreSQL in its own namespace, keepalived)",
    )
    lab.add_argument(
        "--auth",
        choices=("mac", "8021x"),
        default="mac",
        help="demo: how the MS identifies itself: its MAC (a profile), or 802.1X (wpa_supplicant, "
        "hostapd on each access port, the DMPA's RADIUS proxy, visited and home FreeRADIUS)",
    )
    lab.add_argument(
        "--dual-stack",
        action="store_true",
        help="demo: the MS runs IPv6 too (SLAAC from the DMPAs' RAs, an IPv6 home network "
        "prefix from the DLMAP, a TCP session over IPv6 across the handover)",
    )
    fuzz = lab.add_argument_group("fuzz")
    fuzz.add_argument("--inputs", type=int, default=1_000_000, help="fuzz: inputs to send")
    fuzz.add_argument("--rate", type=float, default=25_000, help="fuzz: at most this many a second")
    fuzz.add_argument("--seed", type=int, default=1, help="fuzz: the random seed (reproducible)")
    soak = lab.add_argument_group("soak")
    soak.add_argument("--minutes", type=float, default=10.0, help="soak: how long")
    soak.add_argument("--mss", type=int, default=10_000, help="soak: simulated MSs in all")
    soak.add_argument("--real-mss", type=int, default=3, help="soak: real MS namespaces (1..9)")
    from netlmm_lab.throughput import add_arguments

    add_arguments(lab, fastpath=False)


def lab_main(args: argparse.Namespace) -> int:
    import os

    if os.geteuid() != 0:
        print("netlmm lab: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.action == "demo":
        from pathlib import Path

        from netlmm_lab.demo import demo

        return demo(
            plot=Path(args.plot) if args.plot else None,
            as_json=args.json,
            dialect=args.dialect,
            fastpath=args.fastpath,
            dhcp=args.dhcp,
            aaa=args.aaa,
            report_association=args.report_association,
            auth=args.auth,
            dual_stack=args.dual_stack,
        )
    if args.action == "up" and args.ha:
        return _up_ha(args)
    if args.action == "up":
        return _up(args)
    if args.action == "fuzz":
        from netlmm_lab.fuzz import main as fuzz_main

        return fuzz_main(args)
    if args.action == "soak":
        from netlmm_lab.soak import main as soak_main

        return soak_main(args)
    if args.action == "bench":
        from netlmm_lab.throughput import run

        return run(args)
    from netlmm_lab.topology import Lab

    removed = Lab.down(args.prefix)
    print("removed: " + (", ".join(removed) if removed else "nothing"))
    return 0


def _up(args: argparse.Namespace) -> int:
    from netlmm_lab import servers
    from netlmm_lab.demo import (
        check_backends,
        describe_backends,
        domain_options,
        lab_profiles,
        start_backends,
    )
    from netlmm_lab.domain import NAMESPACE, Domain
    from netlmm_lab.topology import Lab, LabError

    try:
        check_backends(args.dhcp, args.aaa)
    except LabError as exc:
        print(f"netlmm lab up: {exc}", file=sys.stderr)
        return 2
    lab = Lab().start()
    try:
        domain = Domain(
            lab,
            lab_profiles(lab, args.aaa),
            dialect=args.dialect,
            fastpath=args.fastpath,
            **domain_options(args.dhcp, args.aaa),
        )
        started = start_backends(lab, args.dhcp, args.aaa)
        domain.start()
    except BaseException:
        lab.close()
        raise
    for process in domain.processes.values():
        lab.forget(process)  # they outlive this command; lab down ends them
    for server in started.values():
        lab.forget(server.process)  # lab down ends them with their namespace
    prefix = lab.detach()
    print(f"lab {prefix} is up; remove it with: netlmm lab down {prefix}")
    for kind, text in describe_backends(started).items():
        print(f"  {kind.upper():6} {text}")
    for server in started.values():
        print(f"         log {server.log}")
    for role, short in NAMESPACE.items():
        print(
            f"  {role:6} ip netns exec {prefix}-{short} ...   "
            f"netlmm show counters --socket {domain.configs.sockets[role]}"
        )
    print(f"  MS     ip netns exec {prefix}-ms udhcpc -i ms0 -f -s ... (MAC {lab.ms_mac()})")
    first = servers.SERVER_RANGE[0] if args.dhcp != "builtin" else "192.0.2.100"
    print(f"  CN     ip netns exec {prefix}-cn ping {first}   (the MS's first address)")
    return 0


def _up_ha(args: argparse.Namespace) -> int:
    """``lab up --ha``: the pair (netlmm_lab.ha), left running until ``lab down``."""
    from netlmm_lab.demo import lab_profiles
    from netlmm_lab.ha import ROLE_NS, HADomain, HALab

    if args.dhcp != "builtin" or args.aaa != "local":
        print("netlmm lab up: --ha runs with the built-in DHCP and local AAA", file=sys.stderr)
        return 2
    lab = HALab()
    lab.start()
    try:
        domain = HADomain(lab, lab_profiles(lab, "local"), dialect=args.dialect)
        domain.start()
    except BaseException:
        lab.close()
        raise
    for process in [*domain.processes.values(), *domain.keepalived.values()]:
        lab.forget(process)  # they outlive this command; lab down ends them with the namespaces
    for process in domain.watchers.values():
        lab.forget(process)
    if domain.db is not None and domain.db.proc is not None:
        lab.forget(domain.db.proc)
    prefix = lab.detach()
    print(f"lab {prefix} is up (DLMAP pair); remove it with: netlmm lab down {prefix}")
    for role, short in ROLE_NS.items():
        what = "ha" if role.startswith("dlmap") else "counters"
        print(
            f"  {role:8} ip netns exec {prefix}-{short} ...   "
            f"netlmm show {what} --socket {domain.configs.sockets[role]}"
        )
    assert domain.db is not None
    print(f"  DB       {domain.db.tcp_dsn('netlmm', 'netlmm', '2001:db8:5::1')} (ns {prefix}-db)")
    print(f"           psql -h {domain.db.sockets} -U postgres netlmm")
    print(f"  MS       ip netns exec {prefix}-ms udhcpc -i ms0 -f -s ... (MAC {lab.ms_mac()})")
    print(f"  failover ip netns exec {prefix}-lm ...: kill the DLMAP there, watch show ha")
    return 0
