"""The peers of a node as an operator looks at them: ``netlmm show peers`` and the
``netlmm_peer_up{peer}`` metric.

One row per ``[peer]`` section: ``state``, ``last_heard`` (seconds since the peer last sent a
heartbeat request or an accepted response; None: never), ``missed`` (heartbeats in a row),
``restart_counter`` (the peer's, RFC 5847; None until its first response), ``spi`` (None:
``insecure = yes``), ``dialect`` and ``bindings`` (the MSs registered with it).

``state`` is ``up`` (heard from, and answering), ``missing`` (the last heartbeat went
unanswered), ``down`` (``heartbeat_missing`` in a row unanswered: unreachable) or ``unknown``
(nothing heard yet: heartbeats off, or the first one still on its way).
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def peer_rows(node: Any) -> list[dict[str, object]]:
    """The rows (module docstring) of a DMPANode or DLMAPNode."""
    now = node.clock.now()
    liveness = node.core.heartbeat.peers
    key = "dlmap" if node.settings.node.role == "dmpa" else "dmpa"
    bindings = Counter(str(row.get(key)) for row in node.rows() if _bound(row))
    rows = []
    for peer in node.settings.peers:
        live = liveness.get(peer.address)
        heard = None if live is None or live.last_heard is None else now - live.last_heard
        rows.append(
            {
                "peer": str(peer.address),
                "state": _state(live),
                "last_heard": None if heard is None else round(heard, 1),
                "missed": 0 if live is None else live.missed,
                "restart_counter": None if live is None else live.restart_counter,
                "spi": peer.spi,
                "dialect": peer.dialect.name,
                "bindings": bindings.get(str(peer.address), 0),
            }
        )
    return rows


def _bound(row: dict[str, object]) -> bool:
    return row.get("state", "registered") == "registered"


def _state(live: Any) -> str:
    if live is None:
        return "unknown"
    if not live.reachable:
        return "down"
    if live.missed:
        return "missing"
    return "up" if live.last_heard is not None else "unknown"


def peer_up(node: Any) -> list[tuple[tuple[str, ...], int]]:
    """``netlmm_peer_up{peer}``: 1 for a peer in state ``up``, else 0."""
    return [((str(row["peer"]),), int(row["state"] == "up")) for row in peer_rows(node)]
