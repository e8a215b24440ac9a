"""The Prometheus endpoint: ``GET /metrics`` on ``node.metrics`` (off by default).

Rules:

1. Nothing is counted for the metrics: at scrape time a custom collector reads the registries
   the node keeps anyway (``show counters``: node, core, services, AAA, fastpath and MH socket
   counters) and the sizes of its tables. No Python work is added per packet.
2. The two latency histograms are observed per signaling event (an :class:`ActionRunner`
   observer), never per packet: registration (DMPA: an MS's attach to its binding, AAA and any
   DHCP wait included) and handover (DLMAP: the new DMPA's PBU to the PBA released to it, the
   revocation of the old DMPA included).
3. The HTTP server (:mod:`router.adapters.metrics_http`) runs on the node's own loop, so a
   scrape reads the counters between two loop turns and never races the data path.
4. Names follow the Prometheus conventions: ``netlmm_`` prefix, counters end in ``_total``,
   durations in seconds, sizes in bytes. Every raw counter that no metric exports under a name
   of its own is exported as ``netlmm_internal_events_total{group,name}``, so nothing the node
   counts is out of reach and no series is there twice; no label value is empty; each role
   exports its own latency histogram only; ``netlmm_build_info`` says what runs.
5. The metrics are a table (:data:`METRICS`) of the declared counters (router.core.counters,
   :mod:`router.app.counters`): a sample is a declared name or every counted name of declared
   families, never a string looked up by hand.

docs/service.md lists the metrics with what to watch.
"""

from __future__ import annotations

import platform
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from router import __version__
from router.app.counters import GROUPS, LEVELS
from router.app.peers import peer_up
from router.app.runner import EVENT, RunnerCounter
from router.app.runtime import MH_MALFORMED, TIERS, NodeCounter
from router.core.actions import Bind, Event
from router.core.common import BRA_STATUS, PBA_STATUS, SignalingCounter
from router.core.counters import Declaration, Declared, Family, is_declared
from router.core.dlmap import DLMAPCounter
from router.core.dmpa import DMPACounter, State
from router.core.limits import TABLE
from router.core.revocation import RevocationCounter
from router.core.security import AUTH_REPLY, AUTH_RX, AuthCounter

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10, 30)
#: How many registrations or handovers in progress the latency observer remembers.
PENDING_CAPACITY = 4096


class ObservedNode(Protocol):
    """What the collector reads: :class:`DMPANode` and :class:`DLMAPNode` both fit."""

    settings: Any
    core: Any

    def show(self, what: str) -> Any: ...


Groups = Mapping[str, Mapping[str, int]]


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class One:
    """One sample, always there (0 until counted): counter ``name`` of ``group``."""

    labels: tuple[str, ...]
    group: str
    name: Declared


@dataclass(frozen=True, slots=True)
class Each:
    """A sample per counter of ``group`` that ``declared`` names (and that was counted), in
    name order: the labels are ``labels`` then, with ``part``, the variable part of the
    family the name belongs to, else the name without ``strip``."""

    group: str
    declared: tuple[Declaration, ...]
    labels: tuple[str, ...] = ()
    part: bool = True
    strip: str = ""


@dataclass(frozen=True, slots=True)
class FromState:
    """Samples read from the node's state at scrape time (sizes of its tables)."""

    read: Callable[[Any], Iterable[tuple[tuple[str, ...], int]]]


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric family: its name (``_total`` added to counters), help, labels, samples,
    kind and the roles that export it."""

    name: str
    doc: str
    labels: tuple[str, ...]
    samples: tuple[One | Each | FromState, ...]
    gauge: bool = False
    roles: tuple[str, ...] = ("dlmap", "dmpa")


def _bindings(node: Any) -> list[tuple[tuple[str, ...], int]]:
    pending = len(node.core.pending)
    return [(("bound",), len(node.core.bindings) - pending), (("handover_pending",), pending)]


def _visitors(node: Any) -> list[tuple[tuple[str, ...], int]]:
    counts = dict.fromkeys((s.value for s in State), 0)
    for visitor in node.core.visitors.values():
        counts[visitor.state.value] += 1
    return [((state,), value) for state, value in counts.items()]


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _fastpath(fastpath: Mapping[str, int]) -> Iterator[Metric]:
    """The fastpath's ``direction.reason`` table: forwarded, punted and dropped per reason."""
    from fastpath import Reason, Verdict
    from fastpath.common import VERDICT_OF

    packets = _counter(
        "netlmm_fastpath_forwarded_packets", "Packets the fastpath forwarded", ["direction"]
    )
    octets = _counter(
        "netlmm_fastpath_forwarded_bytes", "IPv4 bytes the fastpath forwarded", ["direction"]
    )
    punted = _counter(
        "netlmm_fastpath_punted_packets",
        "Packets the fastpath handed to the slow path, per reason",
        ["direction", "reason"],
    )
    dropped = _counter(
        "netlmm_fastpath_dropped_packets",
        "Packets the fastpath dropped, per reason",
        ["direction", "reason"],
    )
    errors = _counter(
        "netlmm_fastpath_tx_errors", "Forwarded packets whose write failed", ["direction"]
    )
    for direction in ("uplink", "downlink"):
        packets.add_metric([direction], fastpath.get(f"{direction}.forwarded", 0))
        octets.add_metric([direction], fastpath.get(f"{direction}.bytes", 0))
        errors.add_metric([direction], fastpath.get(f"{direction}.tx_errors", 0))
        for reason in Reason:
            verdict = VERDICT_OF[reason]
            if verdict is Verdict.FORWARD:
                continue
            name = reason.name.lower()
            family = punted if verdict is Verdict.PUNT else dropped
            family.add_metric([direction, name], fastpath.get(f"{direction}.{name}", 0))
    yield from (packets, octets, punted, dropped, errors)


def _kernel(kernel: Mapping[str, int], datapath: Mapping[str, int]) -> Iterator[Metric]:
    """Which tier runs, and the kernel tier's ``direction.reason`` table (zeros while it does
    not run)."""
    from fastpath import Verdict
    from fastpath.kernel import KERNEL_VERDICT

    tier = GaugeMetricFamily(
        "netlmm_datapath_tier", "1 for the tier that forwards bound MSs", labels=["tier"]
    )
    for name in TIERS:
        tier.add_metric([name], datapath.get(f"tier.{name}", 0))
    packets = _counter(
        "netlmm_kernel_forwarded_packets", "Packets the kernel tier forwarded", ["direction"]
    )
    octets = _counter(
        "netlmm_kernel_forwarded_bytes", "IPv4 bytes the kernel tier forwarded", ["direction"]
    )
    punted = _counter(
        "netlmm_kernel_punted_packets",
        "Packets the kernel tier left to the Cython tier, per reason",
        ["direction", "reason"],
    )
    dropped = _counter(
        "netlmm_kernel_dropped_packets",
        "Packets the kernel tier dropped, per reason",
        ["direction", "reason"],
    )
    for direction in ("uplink", "downlink"):
        packets.add_metric([direction], kernel.get(f"{direction}.forwarded", 0))
        octets.add_metric([direction], kernel.get(f"{direction}.forwarded.bytes", 0))
        for reason, verdict in KERNEL_VERDICT.items():
            if verdict is Verdict.FORWARD:
                continue
            name = reason.name.lower()
            family = punted if verdict is Verdict.PUNT else dropped
            family.add_metric([direction, name], kernel.get(f"{direction}.{name}", 0))
    yield from (tier, packets, octets, punted, dropped)


def _revocations_in_flight(node: Any) -> list[tuple[tuple[str, ...], int]]:
    return [((), len(node.core.revocations))]


_AUTH = (
    AuthCounter,
    AUTH_RX,
    AUTH_REPLY,
    NodeCounter.AUTH_RELOAD_OK,
    NodeCounter.AUTH_RELOAD_ERROR,
)
_REGISTRATIONS = (
    One(("accepted", "0"), "core", SignalingCounter.PBA_ACCEPTED),
    Each("core", (PBA_STATUS,), ("rejected",)),
)
_DLMAP, _DMPA = ("dlmap",), ("dmpa",)

#: The metrics after the fastpath's, in the order they are exported.
METRICS: tuple[Spec, ...] = (
    Spec(
        "netlmm_mh_messages",
        "Mobility Header messages",
        ("direction",),
        (One(("rx",), "node", NodeCounter.MH_RX), One(("tx",), "node", NodeCounter.MH_TX)),
    ),
    Spec(
        "netlmm_mh_malformed",
        "Mobility Header messages dropped as malformed, by decode error",
        ("error",),
        (Each("node", (MH_MALFORMED,)),),
    ),
    Spec(
        "netlmm_auth",
        "RFC 4285 signaling authentication outcomes (rx.ok, rx.<reason>, tx.signed, ...)",
        ("outcome",),
        (Each("node", _AUTH, part=False, strip="auth."),),
    ),
    Spec(
        "netlmm_events",
        "Events the node logged (one per kind)",
        ("kind",),
        (Each("node", (EVENT,)),),
    ),
    Spec(
        "netlmm_log_suppressed",
        "Event log lines left out (rate limit)",
        (),
        (One((), "node", RunnerCounter.LOG_SUPPRESSED),),
    ),
    Spec(
        "netlmm_registrations",
        "PBAs sent, by result and status code (refreshes included)",
        ("result", "status"),
        _REGISTRATIONS,
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_registrations",
        "PBAs received for our PBUs, by result and status code (refreshes included)",
        ("result", "status"),
        _REGISTRATIONS,
        roles=_DMPA,
    ),
    Spec(
        "netlmm_store_backlog_rows",
        "State rows waiting for a failed write's retry",
        (),
        (One((), "node", RunnerCounter.STORE_BACKLOG),),
        gauge=True,
    ),
    Spec(
        "netlmm_store_epoch",
        "store = postgresql: the DLMAP identity's epoch this process holds (0: none)",
        (),
        (One((), "node", RunnerCounter.STORE_EPOCH),),
        gauge=True,
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_store_fenced",
        "store = postgresql: writes refused because another process took the identity",
        (),
        (One((), "node", RunnerCounter.STORE_FENCED),),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_limit_table_sources",
        "Sources each rate limit remembers (table_size caps it)",
        ("limit",),
        (Each("limits", (TABLE,)),),
        gauge=True,
    ),
    Spec(
        "netlmm_peer_up",
        "1 while the peer answers its heartbeats (netlmm show peers: state up), else 0",
        ("peer",),
        (FromState(peer_up),),
        gauge=True,
    ),
    # --- the DLMAP's
    Spec(
        "netlmm_bindings",
        "Binding cache entries, by state",
        ("state",),
        (FromState(_bindings),),
        gauge=True,
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_bindings_created",
        "Bindings created (first registration)",
        (),
        (One((), "core", DLMAPCounter.BINDING_CREATED),),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_bindings_removed",
        "Bindings removed, by reason",
        ("reason",),
        (
            One(("expired",), "core", DLMAPCounter.BINDING_EXPIRED),
            One(("deregistered",), "node", EVENT("deregistered")),
            One(("cleared",), "core", DLMAPCounter.BINDING_CLEARED),
        ),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_handovers",
        "Handovers: a binding moved to another DMPA",
        (),
        (One((), "core", DLMAPCounter.HANDOVER),),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_revocations",
        "Binding revocations of the old DMPA, by result and the BRA's status code",
        ("result", "status"),
        (Each("core", (BRA_STATUS,), ("acknowledged",)),),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_revocations_unanswered",
        "Revocations never answered before the old registration's lifetime was over",
        (),
        (One((), "core", RevocationCounter.BRI_UNANSWERED),),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_revocations_sent",
        "BRIs sent (first transmissions)",
        (),
        (One((), "core", RevocationCounter.BRI_SENT),),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_revocations_in_flight",
        "BRIs waiting for their BRA",
        (),
        (FromState(_revocations_in_flight),),
        gauge=True,
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_retransmissions",
        "Retransmissions: BRIs we sent again, PBUs a DMPA sent again",
        ("message",),
        (
            One(("bri_sent",), "core", RevocationCounter.BRI_RETRANSMITTED),
            One(("pbu_received",), "core", DLMAPCounter.PBU_RETRANSMISSION),
        ),
        roles=_DLMAP,
    ),
    Spec(
        "netlmm_dhcp",
        "DHCP service outcomes (built-in server or relay)",
        ("outcome",),
        (Each("dhcp", GROUPS["dhcp"], part=False),),
        roles=_DLMAP,
    ),
    # --- the DMPA's
    Spec(
        "netlmm_visitors",
        "Visitor list entries (MSs), by state",
        ("state",),
        (FromState(_visitors),),
        gauge=True,
        roles=_DMPA,
    ),
    Spec(
        "netlmm_attaches",
        "MSs seen on an access link for the first time",
        (),
        (One((), "core", DMPACounter.ATTACH),),
        roles=_DMPA,
    ),
    Spec(
        "netlmm_pbu_sent",
        "PBUs sent (first transmissions and refreshes)",
        (),
        (One((), "core", DMPACounter.PBU_SENT),),
        roles=_DMPA,
    ),
    Spec(
        "netlmm_retransmissions",
        "Retransmissions: PBUs we sent again",
        ("message",),
        (One(("pbu_sent",), "core", DMPACounter.PBU_RETRANSMIT),),
        roles=_DMPA,
    ),
    Spec(
        "netlmm_revocations",
        "Revocations from the DLMAP, by result and the status code of our BRA",
        ("result", "status"),
        (Each("core", (BRA_STATUS,), ("acknowledged",)),),
        roles=_DMPA,
    ),
    Spec(
        "netlmm_aaa_results",
        "AAA answers, by result",
        ("result",),
        (
            One(("accept",), "core", DMPACounter.AAA_ACCEPT),
            One(("reject",), "core", DMPACounter.AAA_REJECT),
        ),
        roles=_DMPA,
    ),
    Spec(
        "netlmm_aaa_backend",
        "AAA backend (local or RADIUS) outcomes",
        ("outcome",),
        (Each("aaa", GROUPS["aaa"], part=False),),
        roles=_DMPA,
    ),
    Spec(
        "netlmm_access",
        "Access-link services (ARP proxy, DHCP, ICMP) outcomes",
        ("outcome",),
        (Each("access", GROUPS["access"], part=False),),
        roles=_DMPA,
    ),
)


def _variable(name: str, source: Each) -> str:
    if source.part:
        for item in source.declared:
            if isinstance(item, Family) and name in item:
                return item.part(name) or name
    return name.removeprefix(source.strip)


def _samples(
    source: One | Each | FromState, node: Any, groups: Groups
) -> Iterator[tuple[tuple[str, ...], int, tuple[str, str] | None]]:
    """(labels, value, the counter's (group, name) or None for a state read)."""
    if isinstance(source, FromState):
        for labels, value in source.read(node):
            yield labels, value, None
    elif isinstance(source, One):
        name = str(source.name)
        yield source.labels, groups.get(source.group, {}).get(name, 0), (source.group, name)
    else:
        group = groups.get(source.group, {})
        for name in sorted(group):
            if is_declared(name, source.declared):
                labels = (*source.labels, _variable(name, source))
                yield labels, group[name], (source.group, name)


def _metric(spec: Spec, node: Any, groups: Groups, consumed: set[tuple[str, str]]) -> Metric:
    family = GaugeMetricFamily if spec.gauge else CounterMetricFamily
    metric = family(spec.name, spec.doc, labels=list(spec.labels))
    for source in spec.samples:
        for labels, value, key in _samples(source, node, groups):
            metric.add_metric(list(labels), value)
            if key is not None:
                consumed.add(key)
    return metric


def _is_level(name: str) -> bool:
    return is_declared(name, LEVELS)


def _events(groups: Groups, consumed: set[tuple[str, str]]) -> Metric:
    """The counters no metric above exports under a name of its own (no series twice)."""
    family = CounterMetricFamily(
        "netlmm_internal_events",
        "Every other counter the node keeps, as show counters names it",
        labels=["group", "name"],
    )
    for group in sorted(groups):
        if group == "fastpath":  # all of it in the netlmm_fastpath_* families
            continue
        for name, value in sorted(groups[group].items()):
            if (group, name) in consumed:
                continue
            if isinstance(value, int) and not _is_level(name):
                family.add_metric([group, name], value)
    return family


def _fastpath_twin() -> str:
    try:
        import fastpath._fastpath  # noqa: F401
    except ImportError:
        return "reference"
    return "compiled"


class NodeCollector(Collector):
    """Reads a node's registries at scrape time (see the module docstring, rule 1)."""

    def __init__(
        self, node: ObservedNode, extra: Callable[[], Mapping[str, Mapping[str, int]]] | None = None
    ) -> None:
        self.node = node
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        node = self.node
        settings = node.settings.node
        groups: dict[str, Mapping[str, int]] = dict(node.show("counters"))
        if self.extra is not None:
            groups.update(self.extra())
        info = GaugeMetricFamily(
            "netlmm_info", "This node: role, name, version", labels=["role", "name", "version"]
        )
        info.add_metric([settings.role, settings.name, __version__], 1)
        yield info
        build = GaugeMetricFamily(
            "netlmm_build_info",
            "The software: netlmm version, Python version, fastpath twin (compiled or reference)",
            labels=["version", "python", "fastpath"],
        )
        build.add_metric([__version__, platform.python_version(), _fastpath_twin()], 1)
        yield build
        yield from _fastpath(groups.get("fastpath", {}))
        yield from _kernel(groups.get("kernel", {}), groups.get("datapath", {}))
        # what the tables above export under names of their own
        consumed: set[tuple[str, str]] = {("datapath", f"tier.{name}") for name in TIERS}
        consumed |= {
            ("kernel", name)
            for name in groups.get("kernel", {})
            if name.startswith(("uplink.", "downlink."))
        }
        for spec in METRICS:
            if settings.role in spec.roles:
                yield _metric(spec, node, groups, consumed)
        yield _events(groups, consumed)


class LatencyObserver:
    """Registration and handover durations, from the actions a node carries out (rule 2)."""

    def __init__(self, role: str, registry: CollectorRegistry, revocation_budget: float) -> None:
        self.role = role
        self.budget = revocation_budget
        # each role exports its own histogram only (no empty one of the other role)
        self.registration = Histogram(
            "netlmm_registration_duration_seconds",
            "DMPA: from an MS's attach to its binding (AAA, DHCP wait, PBU/PBA)",
            buckets=LATENCY_BUCKETS,
            registry=registry if role == "dmpa" else None,
        )
        self.handover = Histogram(
            "netlmm_handover_duration_seconds",
            "DLMAP: from the new DMPA's PBU to the PBA released to it (revocation included)",
            buckets=LATENCY_BUCKETS,
            registry=registry if role == "dlmap" else None,
        )
        self._started: OrderedDict[object, float] = OrderedDict()

    def __call__(self, action: object, now: float) -> None:
        if isinstance(action, Event):
            kind = action.kind
            if self.role == "dmpa" and kind == "attach":
                self._start(action.fields.get("mac"), now)
            elif self.role == "dlmap" and kind == "handover":
                if self.budget > 0:
                    self._start(action.fields.get("nai"), now)
                else:  # the PBA leaves in this very flush
                    self.handover.observe(0.0)
            elif self.role == "dlmap" and kind == "pba_released":
                self._stop(action.fields.get("nai"), now, self.handover)
        elif isinstance(action, Bind) and self.role == "dmpa" and action.mac is not None:
            self._stop(action.mac, now, self.registration)

    def _start(self, key: object, now: float) -> None:
        self._started[key] = now
        self._started.move_to_end(key)
        while len(self._started) > PENDING_CAPACITY:
            self._started.popitem(last=False)

    def _stop(self, key: object, now: float, histogram: Histogram) -> None:
        began = self._started.pop(key, None)
        if began is not None:
            histogram.observe(max(0.0, now - began))


def registry_for(
    node: ObservedNode,
    extra: Callable[[], Mapping[str, Mapping[str, int]]] | None = None,
    *,
    process: bool = True,
) -> tuple[CollectorRegistry, LatencyObserver]:
    """A registry with the node's collector, its latency histograms and (``process``) the
    standard ``process_*`` metrics; the observer goes into the node's ActionRunner."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, extra))
    if process:
        ProcessCollector(namespace="", registry=registry)
    budget = float(getattr(node.settings, "revocation_budget", 0.0))
    observer = LatencyObserver(node.settings.node.role, registry, budget)
    return registry, observer
