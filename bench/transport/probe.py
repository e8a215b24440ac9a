"""Ceilings of the transport leg's I/O in the lab's shape, without the appliance.

``sudo .venv/bin/python -m bench.transport.probe`` (root: namespaces) compiles
``probe.c`` into a temporary directory, builds ``a -- [tr br0] -- b`` in network namespaces
(veth + bridge, MTU 1600, 2001:db8:100::/64, as the lab's transport), and runs one sender in
``a`` and one receiver in ``b`` at the same time, each bounded by ``--seconds``, for every case
below. It prints one line per case and saves the JSON beside the lab bench's results. The
namespaces go away at the end, on error and Ctrl-C too (the :class:`Lab` machinery).

The packets are 1540-byte IPv4-in-IPv6 (a 1500-byte inner IPv4 TCP segment of one in-order
flow, checksums valid), what the appliance sends for a full-sized MS packet.

The AF_XDP cases (``*xdp*``) need libxdp and libbpf (Debian: libxdp-dev libbpf-dev); without
them the probe says which packages are missing and runs the other cases.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netlmm_lab.errors import LabError
from netlmm_lab.throughput import default_results_dir, save
from netlmm_lab.topology import BRIDGE, Lab

SOURCE = Path(__file__).with_name("probe.c")
A6, B6 = "2001:db8:100::11", "2001:db8:100::1"
IF = "tr0"
MTU = 1600
SIZE = 1540

# (name, sender mode, receiver mode, GRO on the receiving path, what it shows)
CASES = (
    ("raw-raw", "tx-raw", "rx-raw", False, "today's appliance: sendmmsg -> recvmmsg"),
    ("ring-raw", "tx-ring", "rx-raw", False, "AF_PACKET TX ring + qdisc bypass -> recvmmsg"),
    ("raw-ring", "tx-raw", "rx-ring", False, "sendmmsg -> AF_PACKET TPACKET_V3 RX ring"),
    ("ring-ring", "tx-ring", "rx-ring", False, "both rings"),
    ("raw-raw+gro", "tx-raw", "rx-raw", True, "GRO (veth NAPI) on b's path -> recvmmsg 64 KiB"),
    ("raw-vnet+gro", "tx-raw", "rx-vnet", True, "GRO -> AF_PACKET PACKET_VNET_HDR"),
    ("ring-raw+gro", "tx-ring", "rx-raw", True, "TX ring, GRO -> recvmmsg 64 KiB"),
    ("xdp-raw", "tx-xdp", "rx-raw", False, "AF_XDP TX (no program) -> recvmmsg"),
    ("xdp2k-raw", "tx-xdp2k", "rx-raw", False, "AF_XDP TX, 2048 descriptors a sendto -> recvmmsg"),
    ("raw-xdp", "tx-raw", "rx-xdp", False, "sendmmsg -> native XDP redirect -> AF_XDP RX"),
    ("raw-xdpskb", "tx-raw", "rx-xdpskb", False, "sendmmsg -> generic XDP -> AF_XDP RX"),
    ("xdp-xdp", "tx-xdp", "rx-xdp", False, "AF_XDP at both ends (native XDP on b)"),
    ("xdp2k-xdp", "tx-xdp2k", "rx-xdp", False, "AF_XDP at both ends, 2048 a sendto"),
    ("ring-xdp", "tx-ring", "rx-xdp", False, "AF_PACKET TX ring -> native XDP -> AF_XDP RX"),
)
# The AF_XDP modes need libxdp and libbpf (Debian packages, header -> package).
XDP_HEADERS = {"/usr/include/xdp/xsk.h": "libxdp-dev", "/usr/include/bpf/libbpf.h": "libbpf-dev"}


class Pair(Lab):
    """``a -- [tr br0] -- b``: the lab's transport between one DMPA and the DLMAP."""

    def build(self) -> None:
        for short in ("a", "tr", "b"):
            self.add_namespace(short)
        self.bridge("tr", MTU)
        for short, address in (("a", A6), ("b", B6)):
            self.sysctl(short, "net.ipv6.conf.all.accept_dad=0")
            self.veth(short, IF, "tr", f"p{short}", MTU)
            self.link("tr", "set", f"p{short}", "master", BRIDGE, "up")
            self.addr(short, f"{address}/64", IF, "nodad")
        # The rings read below the IP stack, which still sees every packet: without a
        # listener for next header 4 it would answer each with an ICMPv6 error. Drop them
        # before the stack in the ring cases only (see _case).

    def wait_ready(self, timeout: float = 20.0) -> None:
        self.wait_ping("a", B6, timeout)

    def mac(self, short: str) -> str:
        out = self.ip(short, "-j", "link", "show", IF)
        return str(json.loads(out)[0]["address"])


def _gro(lab: Pair, binary: str, on: bool) -> None:
    """GRO on every receiving veth end of the path, and TSO off on every sending end: veth
    hands a packet to its peer's GRO only when the sender has no TSO (the kernel assumes a
    TSO sender already sends super-packets: veth_skb_is_eligible_for_gro)."""
    gro, tso = ("on", "off") if on else ("off", "on")
    lab.exec("b", [binary, "gro", IF, gro])
    lab.exec("a", [binary, "tso", IF, tso])
    for port in ("pa", "pb"):
        lab.exec("tr", [binary, "gro", port, gro])
        lab.exec("tr", [binary, "tso", port, tso])


def _xdp_missing() -> list[str]:
    """The Debian packages the AF_XDP modes need and this machine lacks."""
    return sorted({pkg for header, pkg in XDP_HEADERS.items() if not Path(header).exists()})


def _case(
    lab: Pair, binary: str, case: tuple[str, str, str, bool, str], seconds: float
) -> dict[str, Any]:
    _, tx, rx, gro, _ = case
    _gro(lab, binary, gro)
    ring_rx = rx in ("rx-ring", "rx-vnet")
    xdp_rx = rx.startswith("rx-xdp")
    if xdp_rx:
        # libxdp's default program redirects every packet of queue 0 to the socket, neighbour
        # solicitations too: a's entry for b must not need them during the run.
        lab.exec("a", ["ip", "-6", "neigh", "replace", B6, "lladdr", lab.mac("b"), "dev", IF,
                       "nud", "permanent"])  # fmt: skip
    if ring_rx:
        lab.exec(
            "b",
            ["nft", "add table ip6 probe; add chain ip6 probe pre { type filter hook prerouting"
             " priority -300; }; add rule ip6 probe pre ip6 nexthdr 4 drop"],
        )  # fmt: skip
    try:
        rx_argv = [binary, rx, B6 if rx == "rx-raw" else IF, f"{seconds + 1.5:g}"]
        if xdp_rx:  # rx-xdp: driver mode (veth's NAPI), rx-xdpskb: generic mode
            rx_argv[1:] = ["rx-xdp", IF, rx_argv[3], "skb" if rx == "rx-xdpskb" else "native"]
        # The dispatcher (several programs on one interface) wants bpffs, which `ip netns exec`
        # does not mount: one program, attached directly, is what the probe measures.
        receiver = lab.popen("b", rx_argv, env={"LIBXDP_SKIP_DISPATCHER": "1"})
        time.sleep(0.3)
        if tx == "tx-raw":
            tx_argv = [binary, tx, A6, B6, f"{seconds:g}", str(SIZE)]
        else:
            tx_argv = [binary, tx, IF, lab.mac("b"), A6, B6, f"{seconds:g}", str(SIZE)]
        if tx.startswith("tx-xdp"):  # copy mode's descriptors per sendto: kernel's 32 or 2048
            tx_argv[1:2] = ["tx-xdp"]
            tx_argv.append("2048" if tx == "tx-xdp2k" else "0")
        sent = lab.exec("a", tx_argv, timeout=seconds + 10)
        out, err = receiver.communicate(timeout=seconds + 10)
        lab.forget(receiver)
    finally:
        if ring_rx:
            lab.exec("b", ["nft", "delete table ip6 probe"], check=False)
        if xdp_rx:  # libxdp detaches on exit; a killed receiver would leave the program
            lab.exec("b", ["ip", "link", "set", "dev", IF, "xdp", "off"], check=False)
            lab.exec("a", ["ip", "-6", "neigh", "del", B6, "dev", IF], check=False)
    result = {"tx": json.loads(sent.stdout), "rx": json.loads(out), "gro": gro}
    if err.strip():
        result["rx_note"] = err.strip()
    if sent.stderr.strip():
        result["tx_note"] = sent.stderr.strip()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.transport.probe", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="each sender's run")
    parser.add_argument("--rounds", type=int, default=3, help="every case, alternating")
    parser.add_argument("--cases", default=",".join(c[0] for c in CASES))
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    wanted = [c for c in CASES if c[0] in args.cases.split(",")]
    if not shutil.which("gcc") or not shutil.which("nft"):
        print("needs gcc and nft", file=sys.stderr)
        return 2
    missing = _xdp_missing()
    if missing:
        skipped = [c[0] for c in wanted if "xdp" in c[0]]
        wanted = [c for c in wanted if "xdp" not in c[0]]
        if skipped:
            print(
                f"AF_XDP cases {','.join(skipped)} skipped: missing {' '.join(missing)}"
                f" (apt-get install {' '.join(missing)})",
                file=sys.stderr,
            )
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "size": SIZE,
        "mtu": MTU,
        "seconds": args.seconds,
        "xdp_missing": missing,
        "cases": {},
    }
    with tempfile.TemporaryDirectory(prefix="netlmm-probe-") as tmp:
        binary = str(Path(tmp) / "probe")
        xdp = ["-DHAVE_XDP"] if not missing else []
        libs = ["-lxdp", "-lbpf"] if not missing else []
        subprocess.run(
            ["gcc", "-O2", *xdp, "-o", binary, str(SOURCE), *libs], check=True, timeout=60
        )
        with Pair() as lab:
            for case in [c for _ in range(max(1, args.rounds)) for c in wanted]:
                runs = report["cases"].setdefault(case[0], {"what": case[4], "runs": []})
                try:
                    result = _case(lab, binary, case, args.seconds)
                except (LabError, ValueError, subprocess.SubprocessError) as exc:
                    print(f"{case[0]}: FAILED {exc}", flush=True)
                    runs["runs"].append({"error": str(exc)})
                    continue
                runs["runs"].append(result)
                tx, rx = result["tx"], result["rx"]
                print(
                    f"{case[0]:14} tx {tx.get('kpps', 0):7.1f} kpps  rx {rx.get('kpps', 0):7.1f}"
                    f" kpps {rx.get('gbit_s', 0):6.2f} Gbit/s  reads {rx.get('reads', 0):>9}"
                    f" super {rx.get('super', 0):>8}  ({case[4]})",
                    flush=True,
                )
    print("\nmedians (kpps of 1540-byte packets received; Gbit/s of outer IPv6 bytes):")
    for name, entry in report["cases"].items():
        ok = [r for r in entry["runs"] if "rx" in r]
        if not ok:
            continue
        entry["rx_kpps_median"] = statistics.median(r["rx"].get("kpps", 0.0) for r in ok)
        entry["tx_kpps_median"] = statistics.median(r["tx"].get("kpps", 0.0) for r in ok)
        entry["rx_gbit_s_median"] = statistics.median(r["rx"].get("gbit_s", 0.0) for r in ok)
        print(
            f"  {name:14} tx {entry['tx_kpps_median']:7.1f}  rx {entry['rx_kpps_median']:7.1f}"
            f" kpps  {entry['rx_gbit_s_median']:5.2f} Gbit/s  ({entry['what']})"
        )
    if not args.no_save:
        path = save(report, default_results_dir(), "transport-probe")
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
