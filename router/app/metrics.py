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
   durations in seconds, sizes in bytes. Every raw counter is also exported as
   ``netlmm_internal_events_total{group,name}``, so nothing the node counts is out of reach.

docs/service.md lists the metrics with what to watch.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from router import __version__
from router.core.actions import Bind, Event

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10, 30)
#: How many registrations or handovers in progress the latency observer remembers.
PENDING_CAPACITY = 4096

_STATUS = re.compile(r"^(pba|bra)\.status\.(\d+)$")
#: Entries of the registries that are sizes, not counts (they go down again): gauges, never in
#: the counter family (a decrease would read as a counter reset).
_LIMIT_TABLE = re.compile(r"^limit\.(\w+)\.table$")
_STORE_BACKLOG = "store.backlog"


def _is_level(name: str) -> bool:
    return name == _STORE_BACKLOG or _LIMIT_TABLE.match(name) is not None


class ObservedNode(Protocol):
    """What the collector reads: :class:`DMPANode` and :class:`DLMAPNode` both fit."""

    settings: Any
    core: Any

    def show(self, what: str) -> Any: ...


Counters = Mapping[str, Mapping[str, int]]


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


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


def _by_status(core: Mapping[str, int], prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in core.items():
        match = _STATUS.match(key)
        if match and match.group(1) == prefix:
            out[match.group(2)] = value
    return out


def _registrations(core: Mapping[str, int], role: str) -> Metric:
    doc = (
        "PBAs sent, by result and status code (refreshes included)"
        if role == "dlmap"
        else "PBAs received for our PBUs, by result and status code (refreshes included)"
    )
    family = _counter("netlmm_registrations", doc, ["result", "status"])
    family.add_metric(["accepted", "0"], core.get("pba.accepted", 0))
    for status, value in sorted(_by_status(core, "pba").items()):
        family.add_metric(["rejected", status], value)
    return family


def _events(groups: Counters) -> Metric:
    family = _counter(
        "netlmm_internal_events",
        "Every counter the node keeps, as show counters names it",
        ["group", "name"],
    )
    for group in sorted(groups):
        for name, value in sorted(groups[group].items()):
            if isinstance(value, int) and not _is_level(name):
                family.add_metric([group, name], value)
    return family


def _levels(groups: Counters) -> Iterator[Metric]:
    """The sizes kept among the counters: the state-write backlog, the limits' tables."""
    backlog = _gauge("netlmm_store_backlog_rows", "State rows waiting for a failed write's retry")
    backlog.add_metric([], groups.get("node", {}).get(_STORE_BACKLOG, 0))
    yield backlog
    tables = _gauge(
        "netlmm_limit_table_sources",
        "Sources each rate limit remembers (table_size caps it)",
        ["limit"],
    )
    for name, value in sorted(groups.get("limits", {}).items()):
        match = _LIMIT_TABLE.match(name)
        if match:
            tables.add_metric([match.group(1)], value)
    yield tables


def _prefixed(
    name: str, doc: str, label: str, counters: Mapping[str, int], prefix: str
) -> CounterMetricFamily:
    family = _counter(name, doc, [label])
    for key, value in sorted(counters.items()):
        if key.startswith(prefix):
            family.add_metric([key[len(prefix) :]], value)
    return family


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
        info = _gauge("netlmm_info", "This node: role, name, version", ["role", "name", "version"])
        info.add_metric([settings.role, settings.name, __version__], 1)
        yield info
        own = groups.get("node", {})
        core = groups.get("core", {})
        yield from _fastpath(groups.get("fastpath", {}))
        mh = _counter("netlmm_mh_messages", "Mobility Header messages", ["direction"])
        mh.add_metric(["rx"], own.get("mh.rx", 0))
        mh.add_metric(["tx"], own.get("mh.tx", 0))
        yield mh
        yield _prefixed(
            "netlmm_mh_malformed",
            "Mobility Header messages dropped as malformed, by decode error",
            "error",
            own,
            "mh.malformed.",
        )
        yield _prefixed(
            "netlmm_auth",
            "RFC 4285 signaling authentication outcomes (rx.ok, rx.<reason>, tx.signed, ...)",
            "outcome",
            own,
            "auth.",
        )
        yield _prefixed(
            "netlmm_events", "Events the node logged (one per kind)", "kind", own, "event."
        )
        suppressed = _counter("netlmm_log_suppressed", "Event log lines left out (rate limit)")
        suppressed.add_metric([], own.get("log.suppressed", 0))
        yield suppressed
        yield _registrations(core, settings.role)
        yield from _levels(groups)
        if settings.role == "dlmap":
            yield from self._dlmap(groups, core, own)
        else:
            yield from self._dmpa(groups, core)
        yield _events(groups)

    def _dlmap(
        self, groups: Counters, core: Mapping[str, int], own: Mapping[str, int]
    ) -> Iterator[Metric]:
        dlmap = self.node.core
        bindings = _gauge("netlmm_bindings", "Binding cache entries, by state", ["state"])
        pending = len(dlmap.pending)
        bindings.add_metric(["bound"], len(dlmap.bindings) - pending)
        bindings.add_metric(["handover_pending"], pending)
        yield bindings
        created = _counter("netlmm_bindings_created", "Bindings created (first registration)")
        created.add_metric([], core.get("binding.created", 0))
        yield created
        removed = _counter("netlmm_bindings_removed", "Bindings removed, by reason", ["reason"])
        removed.add_metric(["expired"], core.get("binding.expired", 0))
        removed.add_metric(["deregistered"], own.get("event.deregistered", 0))
        yield removed
        handovers = _counter("netlmm_handovers", "Handovers: a binding moved to another DMPA")
        handovers.add_metric([], core.get("handover", 0))
        yield handovers
        revocations = _counter(
            "netlmm_revocations",
            "Binding revocations of the old DMPA, by result and the BRA's status code",
            ["result", "status"],
        )
        revocations.add_metric(["unanswered", ""], core.get("bri.unanswered", 0))
        for status, value in sorted(_by_status(core, "bra").items()):
            revocations.add_metric(["acknowledged", status], value)
        yield revocations
        sent = _counter("netlmm_revocations_sent", "BRIs sent (first transmissions)")
        sent.add_metric([], core.get("bri.sent", 0))
        yield sent
        in_flight = _gauge("netlmm_revocations_in_flight", "BRIs waiting for their BRA")
        in_flight.add_metric([], len(dlmap.revocations))
        yield in_flight
        retransmissions = _counter(
            "netlmm_retransmissions",
            "Retransmissions: BRIs we sent again, PBUs a DMPA sent again",
            ["message"],
        )
        retransmissions.add_metric(["bri_sent"], core.get("bri.retransmitted", 0))
        retransmissions.add_metric(["pbu_received"], core.get("pbu.retransmission", 0))
        yield retransmissions
        yield _prefixed(
            "netlmm_dhcp", "DHCP service outcomes (built-in server or relay)", "outcome",
            groups.get("dhcp", {}), "",
        )  # fmt: skip

    def _dmpa(self, groups: Counters, core: Mapping[str, int]) -> Iterator[Metric]:
        from router.core.dmpa import State

        counts = dict.fromkeys((s.value for s in State), 0)
        for visitor in self.node.core.visitors.values():
            counts[visitor.state.value] += 1
        visitors = _gauge("netlmm_visitors", "Visitor list entries (MSs), by state", ["state"])
        for state, value in counts.items():
            visitors.add_metric([state], value)
        yield visitors
        attaches = _counter("netlmm_attaches", "MSs seen on an access link for the first time")
        attaches.add_metric([], core.get("attach", 0))
        yield attaches
        sent = _counter("netlmm_pbu_sent", "PBUs sent (first transmissions and refreshes)")
        sent.add_metric([], core.get("pbu.sent", 0))
        yield sent
        retransmissions = _counter(
            "netlmm_retransmissions", "Retransmissions: PBUs we sent again", ["message"]
        )
        retransmissions.add_metric(["pbu_sent"], core.get("pbu.retransmit", 0))
        yield retransmissions
        revocations = _counter(
            "netlmm_revocations",
            "Revocations from the DLMAP, by result and the status code of our BRA",
            ["result", "status"],
        )
        for status, value in sorted(_by_status(core, "bra").items()):
            revocations.add_metric(["acknowledged", status], value)
        yield revocations
        aaa = _counter("netlmm_aaa_results", "AAA answers, by result", ["result"])
        aaa.add_metric(["accept"], core.get("aaa.accept", 0))
        aaa.add_metric(["reject"], core.get("aaa.reject", 0))
        yield aaa
        yield _prefixed(
            "netlmm_aaa_backend", "AAA backend (local or RADIUS) outcomes", "outcome",
            groups.get("aaa", {}), "",
        )  # fmt: skip
        yield _prefixed(
            "netlmm_access",
            "Access-link services (ARP proxy, DHCP, ICMP) outcomes",
            "outcome",
            groups.get("access", {}),
            "",
        )


class LatencyObserver:
    """Registration and handover durations, from the actions a node carries out (rule 2)."""

    def __init__(self, role: str, registry: CollectorRegistry, revocation_budget: float) -> None:
        self.role = role
        self.budget = revocation_budget
        self.registration = Histogram(
            "netlmm_registration_duration_seconds",
            "DMPA: from an MS's attach to its binding (AAA, DHCP wait, PBU/PBA)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.handover = Histogram(
            "netlmm_handover_duration_seconds",
            "DLMAP: from the new DMPA's PBU to the PBA released to it (revocation included)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
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
