"""The operations surface of a running node: SIGHUP and ``netlmm reload`` (:func:`reload`), and
the control socket's commands (:func:`control_handler`): ``show``, ``attach``.

:func:`reload` re-reads the ini file and applies what can change in a running node, without
touching the bindings: the RFC 4285 keys (``node.key_file``'s content), the log level and
format, and the DMPA's local AAA profiles. Every other changed key is logged as needing a
restart (``reload_needs_restart key=...``) and keeps its running value; a file with errors is
refused as a whole (each error logged) and changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from router.adapters import sockets
from router.adapters.control import ControlError
from router.app import logs
from router.app.dlmap_node import DLMAPNode
from router.app.dmpa_node import DMPANode
from router.app.peers import peer_rows
from router.app.settings import DMPASettings, Settings
from router.core.limits import LimitSettings, Rate
from router.core.security import KeyRing

log = logging.getLogger("netlmm")

Node = DMPANode | DLMAPNode


def flatten(settings: Settings) -> dict[str, object]:
    """``section.key`` -> value, as the ini file names them (a peer or profile: one entry)."""
    out: dict[str, object] = {}
    role = settings.node.role
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "node":
            for nf in dataclasses.fields(value):
                if nf.name != "keys":  # the key file's content: reloaded on every SIGHUP
                    out[f"node.{nf.name}"] = getattr(value, nf.name)
        elif f.name == "peers":
            out.update({f"peer {p.address}": p for p in value})
        elif f.name == "profiles":
            out.update({f"profile {p.nai}": p for p in value})
        elif f.name == "radius":
            out["radius"] = value
        elif f.name == "limits":  # [limits] NAME_rate, NAME_burst of this role, table_size
            out.update(_limit_keys(role, value))
        else:
            out[f"{role}.{f.name}"] = value
    return out


def _limit_keys(role: str, limits: LimitSettings) -> dict[str, object]:
    from router.app.config import LIMITS_DLMAP, LIMITS_DMPA

    out: dict[str, object] = {}
    for name in LIMITS_DMPA if role == "dmpa" else LIMITS_DLMAP:
        rate: Rate = getattr(limits, name)
        out[f"limits.{name}_rate"] = rate.rate
        out[f"limits.{name}_burst"] = rate.burst
    out["limits.table_size"] = limits.table_size
    return out


def redacted(value: object) -> object:
    """Settings as JSON-ready data, secrets out: RADIUS secrets and RFC 4285 keys never leave."""
    if isinstance(value, KeyRing):
        return {"spis": list(value.spis)}
    if isinstance(value, bytes | bytearray):
        return "(secret)"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: redacted(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    if isinstance(value, dict):
        return {str(k): redacted(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def reload(
    node: Node,
    path: Path | None,
    log_format: str | None = None,
    pinned: dict[str, object] | None = None,
) -> list[str]:
    """SIGHUP: apply what can change at run time, log the rest; returns the keys applied.
    ``pinned``: keys whose running value differs from the file's by design (the tunnel MTU
    cut to the route's at start), compared with the file as the file had them."""
    from router.app import config

    log.info("reload path=%s", logs.quote(path))
    node.reload_keys()  # RFC 4285 keys: a bad file keeps the old keys (logged)
    if path is None:
        return []
    try:
        new, warnings = config.load(path)
    except config.ConfigErrors as exc:
        for problem in exc.problems:
            log.error("reload_refused problem=%s changed=none", logs.quote(problem))
        return []
    for warning in warnings:
        log.warning("reload_warning warning=%s", logs.quote(warning))
    current = node.settings
    if new.node.role != current.node.role:
        log.warning("reload_needs_restart key=node.role")
        return []
    old_view, new_view = {**flatten(current), **(pinned or {})}, flatten(new)
    changed = sorted(
        k for k in old_view.keys() | new_view.keys() if old_view.get(k) != new_view.get(k)
    )
    applied: list[str] = []
    node_fields: dict[str, Any] = {}
    if "node.log_level" in changed:
        logs.set_level(new.node.log_level)
        node_fields["log_level"] = new.node.log_level
    if "node.log_format" in changed and log_format is None:
        logs.setup(new.node.log_level, new.node.log_format)
        node_fields["log_format"] = new.node.log_format
    replace: dict[str, Any] = {}
    profiles = [k for k in changed if k.startswith("profile ")]
    if profiles and isinstance(node, DMPANode) and isinstance(new, DMPASettings):
        node.aaa.set_profiles(new.profiles)
        node.runner.submit(node.access.forget_rejected(node.clock.now()))  # they may get in now
        replace["profiles"] = new.profiles
        applied += profiles
    if node_fields:
        replace["node"] = dataclasses.replace(current.node, **node_fields)
        applied += [f"node.{k}" for k in node_fields]
    if replace:
        node.settings = dataclasses.replace(current, **replace)
    for key in changed:
        if key not in applied:
            log.warning("reload_needs_restart key=%s", logs.quote(key))
    log.info("reloaded applied=%s", ",".join(applied) or "-")
    return applied


def control_handler(
    node: Node, endpoint: sockets.MHEndpoint
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "associated":
            if not isinstance(node, DMPANode):
                raise ControlError("only a DMPA has access links")
            try:
                link = request.get("link")
                mac = str(request.get("mac", ""))
                result = node.associated(mac, None if link is None else str(link))
            except ValueError as exc:
                raise ControlError(str(exc)) from None
            return {"what": command, "role": node.settings.node.role, "result": result}
        if command != "show":
            raise ControlError(f"unknown command {command!r}")
        what = str(request.get("what", ""))
        if what == "peers":
            return {"what": what, "role": node.settings.node.role, "result": peer_rows(node)}
        if what == "config":
            view = {k: redacted(v) for k, v in flatten(node.settings).items()}
            keys = node.settings.node.keys
            view["node.keys"] = redacted(keys) if keys is not None else None
            return {"what": what, "role": node.settings.node.role, "result": view}
        try:
            result = node.show(what)
        except KeyError:
            raise ControlError(f"nothing called {what!r} to show") from None
        if what == "counters" and isinstance(result, dict):
            result["mh_socket"] = dict(endpoint.counters)
        return {"what": what, "role": node.settings.node.role, "result": result}

    return handle
