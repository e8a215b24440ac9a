"""Dual-stack MSs in the lab: IPv6 on the CN and the MS, the DLMAP's uplink, and the checks the
proof and ``netlmm lab demo --dual-stack`` share.

The domain's IPv4 side gains an IPv6 network (documentation prefix 2001:db8:71::/64) between
the CN and the DLMAP, the CN routes the DLMAP's ``ipv6_pool`` back through it, and the MS runs
plain Linux IPv6: router advertisements accepted, SLAAC, duplicate-address detection on (one
probe), no agent. Its home network prefix comes from the DLMAP (RFC 5213), its RAs from the
DMPA serving it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from netlmm_lab.poll import wait_until
from netlmm_lab.topology import CN_IF, MS_IF, UPLINK_IF, Lab

#: The DLMAP's prefix pool: one /64 per dual-stack MS.
IPV6_POOL = IPv6Network("2001:db8:ff00::/48")
#: The CN and the DLMAP on the IPv6 side of the uplink.
UPLINK6 = IPv6Network("2001:db8:71::/64")
CN6 = IPv6Address("2001:db8:71::2")
DLMAP_UPLINK6 = IPv6Address("2001:db8:71::1")


def enable(lab: Lab, ms: str = "ms") -> None:
    """IPv6 on the CN's and the DLMAP's uplink, the pool routed back to the DLMAP, and plain
    host IPv6 on the MS (accept_ra, SLAAC, DAD with one probe)."""
    lab.sysctl(
        "cn",
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
        f"net.ipv6.conf.{CN_IF}.disable_ipv6=0",
    )
    lab.addr("cn", f"{CN6}/64", CN_IF, "nodad")
    lab.addr("lm", f"{DLMAP_UPLINK6}/64", UPLINK_IF, "nodad")
    lab.ip("cn", "-6", "route", "add", str(IPV6_POOL), "via", str(DLMAP_UPLINK6))
    lab.sysctl(
        ms,
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
        f"net.ipv6.conf.{MS_IF}.accept_ra=1",
        f"net.ipv6.conf.{MS_IF}.autoconf=1",
        f"net.ipv6.conf.{MS_IF}.use_tempaddr=0",
        f"net.ipv6.conf.{MS_IF}.accept_dad=1",
        f"net.ipv6.conf.{MS_IF}.dad_transmits=1",
        f"net.ipv6.conf.{MS_IF}.disable_ipv6=0",
    )


@dataclass(frozen=True, slots=True)
class Slaac:
    address: IPv6Address
    router: IPv6Address  # the default router the MS learned (the pseudo-MAC's link-local)
    seconds: float  # from the call until the address was usable (not tentative)


def addresses(lab: Lab, ms: str = "ms") -> list[dict[str, Any]]:
    """The MS's global IPv6 addresses, as ``ip -j -6 addr`` says them."""
    out = lab.ip(ms, "-j", "-6", "addr", "show", "dev", MS_IF, "scope", "global")
    infos: list[dict[str, Any]] = []
    for link in json.loads(out or "[]"):
        infos += [info for info in link.get("addr_info", []) if info.get("local")]
    return infos


def default_router(lab: Lab, ms: str = "ms") -> IPv6Address | None:
    out = json.loads(lab.ip(ms, "-j", "-6", "route", "show", "default") or "[]")
    for route in out:
        if route.get("gateway"):
            return IPv6Address(route["gateway"])
    return None


def wait_slaac(lab: Lab, timeout: float = 20.0, ms: str = "ms") -> Slaac:
    """Until the MS has a usable (not tentative) global address in the pool and a default
    router."""
    start = time.monotonic()
    found: dict[str, Any] = {}

    def ready() -> bool:
        for info in addresses(lab, ms):
            address = IPv6Address(info["local"])
            if address in IPV6_POOL and not info.get("tentative"):
                router = default_router(lab, ms)
                if router is not None:
                    found.update(address=address, router=router)
                    return True
        return False

    wait_until(ready, timeout, f"a SLAAC address from {IPV6_POOL} on {ms}", interval=0.05)
    return Slaac(found["address"], found["router"], round(time.monotonic() - start, 3))


def tentative_seconds(
    lab: Lab, address: IPv6Address, timeout: float = 10.0, ms: str = "ms"
) -> float:
    """After a move: how long ``address`` stays tentative (the MS's duplicate-address detection
    again), measured by polling every 10 ms; 0 when it never was."""
    start = time.monotonic()
    seen_tentative = False

    def usable() -> bool:
        nonlocal seen_tentative
        for info in addresses(lab, ms):
            if IPv6Address(info["local"]) == address:
                if info.get("tentative"):
                    seen_tentative = True
                    return False
                return True
        return False

    wait_until(usable, timeout, f"{address} usable again on {ms}", interval=0.01)
    return round(time.monotonic() - start, 3) if seen_tentative else 0.0


class DemoPart:
    """What ``netlmm lab demo --dual-stack`` adds to the demo: the IPv6 set-up, SLAAC, a ping
    and a TCP session over IPv6 across the handover, and the MS's DAD on the new link."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.slaac: Slaac | None = None
        self.session: Any = None
        self._dad: dict[str, float] = {}
        self._watch: threading.Thread | None = None

    def prepare(self, options: dict[str, Any], profiles: list[Any]) -> list[Any]:
        """IPv6 in the lab, the DLMAP's pool in ``options``, the profiles dual-stack."""
        enable(self.lab)
        options["ipv6_pool"] = str(IPV6_POOL)
        return [replace(p, ipv6=True) for p in profiles]

    def attach(self) -> Slaac:
        self.slaac = wait_slaac(self.lab)
        return self.slaac

    def ping(self) -> Any:
        from netlmm_lab.tools import ping

        result = ping(self.lab, "ms", str(CN6), count=3)
        if not result.ok:
            raise AssertionError(f"ping {CN6}: {result.loss_pct}% loss")
        return result

    def start_session(self, port: int) -> None:
        from netlmm_lab.tools import TcpSession

        self.session = TcpSession(self.lab, server=str(CN6), port=port)
        self.session.start()

    def moved(self) -> None:
        """The MS's link moved: poll its address for DAD from now on, in the background."""
        slaac = self.slaac
        if slaac is None:
            return
        self._watch = threading.Thread(
            target=lambda: self._dad.update(s=tentative_seconds(self.lab, slaac.address, 15.0)),
            daemon=True,
        )
        self._watch.start()

    def stop(self) -> dict[str, Any]:
        result = self.session.stop() if self.session is not None else None
        if self._watch is not None:
            self._watch.join(20.0)
        kept = self.slaac is not None and any(
            info["local"] == str(self.slaac.address) for info in addresses(self.lab)
        )
        return {
            "address": str(self.slaac.address) if self.slaac else None,
            "router": str(self.slaac.router) if self.slaac else None,
            "slaac_s": self.slaac.seconds if self.slaac else None,
            "address_kept": kept,
            "tcp6_survived": bool(result and result.survived),
            "tcp6_max_rtt_ms": result.max_rtt_ms if result else None,
            "dad_after_move_s": self._dad.get("s"),
        }


# --- the lab bench's IPv6 rows (netlmm lab bench --ipv6) ----------------------------------------

#: The kernel chain's IPv6 (``throughput.Chain``, variant kernel): h1's network is a /64 of the
#: pool, as the MS's is, h2 is the CN's address, A -- B as the tayga variant numbers it.
CHAIN_H1 = (IPv6Address("2001:db8:ff00::2"), IPv6Address("2001:db8:ff00::1"))
CHAIN_H2 = (CN6, DLMAP_UPLINK6)
CHAIN_LINK = (IPv6Address("2001:db8:100::1"), IPv6Address("2001:db8:100::2"))


def chain_ipv6(chain: Lab, host_if: str, down_if: str, link_if: str) -> str:
    """IPv6 forwarding on the kernel chain ``h1 -- A -- B -- h2`` (the reference the appliance's
    IPv6 row is compared with); returns h2's address once h1 reaches it."""
    for short, iface in (("h1", host_if), ("h2", host_if)):
        chain.sysctl(
            short,
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.default.disable_ipv6=0",
            f"net.ipv6.conf.{iface}.disable_ipv6=0",
            "net.ipv6.conf.all.accept_dad=0",
            f"net.ipv6.conf.{iface}.accept_dad=0",
        )
    (h1, a_host), (h2, b_host), (a_link, b_link) = CHAIN_H1, CHAIN_H2, CHAIN_LINK
    chain.addr("h1", f"{h1}/64", host_if, "nodad")
    chain.addr("a", f"{a_host}/64", down_if, "nodad")
    chain.addr("h2", f"{h2}/64", host_if, "nodad")
    chain.addr("b", f"{b_host}/64", down_if, "nodad")
    chain.addr("a", f"{a_link}/64", link_if, "nodad")
    chain.addr("b", f"{b_link}/64", link_if, "nodad")
    chain.ip("h1", "-6", "route", "add", "default", "via", str(a_host))
    chain.ip("h2", "-6", "route", "add", "default", "via", str(b_host))
    chain.ip("a", "-6", "route", "add", str(UPLINK6), "via", str(b_link))
    chain.ip("b", "-6", "route", "add", str(IPV6_POOL), "via", str(a_link))
    chain.wait_ping("h1", str(h2), 10.0)
    return str(h2)


def appliance_ipv6(lab: Lab, options: dict[str, Any], profiles: list[Any]) -> list[Any]:
    """The appliance bed with a dual-stack MS: what :meth:`DemoPart.prepare` does."""
    return DemoPart(lab).prepare(options, profiles)


#: The IPv6 rows: metric key -> (streams, reverse).
IPV6_TCP = {"tcp1_up_v6": (1, False), "tcp1_down_v6": (1, True), "tcp4_up_v6": (4, False)}
