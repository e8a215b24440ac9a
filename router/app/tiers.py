"""Which data-path tier forwards bound MSs: ``[node] datapath`` (docs/kernel-tier.md).

``cython``: the user-space fastpath alone. ``kernel``: the kernel tier beside it, or the node
does not start (:class:`TierRefused`, one line naming the key and the cause). ``auto`` (the
default): the kernel tier when its probe passes, else the user-space fastpath alone, with one
warning line saying why. The user-space fastpath runs in every case: it carries everything the
kernel tier leaves to it (ARP, DHCP, unknown MSs, TTL, MTU, options, ...).
"""

from __future__ import annotations

import logging

from router.adapters.kernelpath import KernelPath, KernelUnavailable, Plan, sweep
from router.app.logs import quote
from router.app.settings import DMPASettings, Settings

log = logging.getLogger("netlmm")


class TierRefused(Exception):
    """``datapath = kernel`` and the kernel tier cannot run: the one line to log."""


def plan_for(settings: Settings) -> Plan:
    node = settings.node
    plan = Plan(node.role, node.name, node.address, node.state_dir, settings.tunnel_mtu)
    if isinstance(settings, DMPASettings):
        return Plan(
            plan.role,
            plan.name,
            plan.address,
            plan.state_dir,
            plan.tunnel_mtu,
            access=settings.access,
            pseudo_mac=settings.pseudo_mac.packed,
            gateway=settings.gateway,
        )
    return plan


def sweep_kernel(settings: Settings) -> list[str]:
    """A crashed run's TC filters on the node's interfaces (start-up, before the devices)."""
    return sweep(plan_for(settings))


def open_kernel_tier(settings: Settings) -> KernelPath | None:
    """The kernel tier the settings ask for, or None (the Cython tier alone). Blocking
    (netlink): call it from an executor."""
    choice = settings.node.datapath
    if choice == "cython":
        return None
    try:
        return KernelPath.open(plan_for(settings))
    except KernelUnavailable as exc:
        if choice == "kernel":
            raise TierRefused(f"the kernel tier cannot run: {exc}") from None
        log.warning("datapath tier=cython reason=%s", quote(f"kernel tier unavailable: {exc}"))
        return None
