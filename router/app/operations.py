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
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from router.adapters import sdnotify, sockets
from router.adapters.control import ControlError
from router.app import logs
from router.app.config_view import ConfigView
from router.app.dlmap_node import DLMAPNode
from router.app.dmpa_node import DMPANode
from router.app.peers import peer_rows
from router.app.settings import DMPASettings, Settings
from router.core.actions import event
from router.core.limits import LimitSettings, Rate
from router.core.security import KeyRing
from router.wire.ethernet import MacAddress

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


@dataclasses.dataclass(slots=True)
class ReloadOutcome:
    """What a reload did: the keys applied, the changed keys that wait for a restart, the
    file's errors (then nothing changed) and warnings, and whether the key file was taken."""

    applied: list[str] = dataclasses.field(default_factory=list)
    restart: list[str] = dataclasses.field(default_factory=list)
    refused: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    keys: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.refused and self.keys is not False

    def as_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "ok": self.ok}


class Reloader:
    """SIGHUP and ``netlmm reload``: :func:`reload_outcome` on the node's ini file, and the
    keys the last accepted file changed that wait for a restart (``show config``)."""

    def __init__(
        self,
        node: Node,
        path: Path | None,
        log_format: str | None = None,
        pinned: dict[str, object] | None = None,
    ) -> None:
        self.node, self.path, self.log_format, self.pinned = node, path, log_format, pinned
        self.pending: list[str] = []
        #: ``show config``'s ini-shaped view of the file read at start (None: no file).
        self.view: ConfigView | None = None
        if path is not None:
            try:
                self.view = ConfigView(path.read_text(encoding="utf-8"), node.settings.node.role)
            except (OSError, ValueError):
                self.view = None

    def __call__(self) -> ReloadOutcome:
        systemd = sdnotify.Notifier()
        systemd.notify(
            reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )
        outcome = reload_outcome(self.node, self.path, self.log_format, self.pinned)
        if not outcome.refused:
            self.pending = outcome.restart
            if self.view is not None and self.path is not None:
                try:
                    text = self.path.read_text(encoding="utf-8")
                    self.view.reloaded(text, outcome.applied, outcome.restart)
                except (OSError, ValueError):
                    log.warning("show_config_stale path=%s", logs.quote(self.path))
        status = "reloaded" if outcome.ok else "reload refused, running on the old settings"
        systemd.notify(ready=1, status=status)
        return outcome


def reload(
    node: Node,
    path: Path | None,
    log_format: str | None = None,
    pinned: dict[str, object] | None = None,
) -> list[str]:
    """:func:`reload_outcome`'s keys applied."""
    return reload_outcome(node, path, log_format, pinned).applied


def reload_outcome(
    node: Node,
    path: Path | None,
    log_format: str | None = None,
    pinned: dict[str, object] | None = None,
) -> ReloadOutcome:
    """Apply what can change at run time, log the rest (module docstring).
    ``pinned``: keys whose running value differs from the file's by design (the tunnel MTU
    cut to the route's at start), compared with the file as the file had them."""
    from router.app import config

    out = ReloadOutcome()
    log.info("reload path=%s", logs.quote(path))
    if node.settings.node.key_file is not None:
        out.keys = node.reload_keys()  # RFC 4285 keys: a bad file keeps the old keys (logged)
    else:
        node.reload_keys()
    if path is None:
        return out
    try:
        new, warnings = config.load(path)
    except config.ConfigErrors as exc:
        for problem in exc.problems:
            log.error("reload_refused problem=%s changed=none", logs.quote(problem))
        out.refused = list(exc.problems)
        return out
    out.warnings = list(warnings)
    for warning in warnings:
        log.warning("reload_warning warning=%s", logs.quote(warning))
    current = node.settings
    if new.node.role != current.node.role:
        log.warning("reload_needs_restart key=node.role")
        out.restart = ["node.role"]
        return out
    old_view, new_view = {**flatten(current), **(pinned or {})}, flatten(new)
    changed = sorted(
        k for k in old_view.keys() | new_view.keys() if old_view.get(k) != new_view.get(k)
    )
    applied = out.applied
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
            out.restart.append(key)
    log.info("reloaded applied=%s", ",".join(applied) or "-")
    return out


def control_handler(
    node: Node, endpoint: sockets.MHEndpoint, reloader: Reloader | None = None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    role = node.settings.node.role

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
            return {"what": command, "role": role, "result": result}
        if command == "reload":
            if reloader is None:
                raise ControlError("this node cannot reload (no ini file)")
            outcome = reloader().as_dict()
            return {"what": command, "role": role, "result": outcome, "ok": outcome["ok"]}
        if command == "clear":
            return {"what": command, "role": role, "result": clear_binding(node, request)}
        if command == "detach":
            return {"what": command, "role": role, "result": detach(node, request)}
        if command != "show":
            raise ControlError(f"unknown command {command!r}")
        what = str(request.get("what", ""))
        if what == "peers":
            return {"what": what, "role": role, "result": peer_rows(node)}
        if what == "config" and reloader is not None and reloader.view is not None:
            return {"what": what, "role": role, "result": reloader.view.as_dict()}
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


def clear_binding(node: Node, request: dict[str, Any]) -> list[dict[str, object]]:
    """``netlmm clear binding --nai NAI | --hoa HOA`` (DLMAP): the binding is removed and its
    DMPA told with a BRI (:meth:`router.core.dlmap.DLMAP.clear`); the bindings cleared."""
    if not isinstance(node, DLMAPNode):
        raise ControlError("bindings are cleared at the DLMAP (a DMPA detaches: netlmm detach)")
    nai, hoa = request.get("nai"), request.get("hoa")
    core = node.core
    if hoa is not None:
        try:
            address = IPv4Address(str(hoa))
        except ValueError:
            raise ControlError(f"not an IPv4 address: {hoa!r}") from None
        found = core.by_hoa.get(address)
        if found is None or (nai is not None and found != nai):
            raise ControlError(f"no binding for {address}")
        nai = found
    if not isinstance(nai, str) or nai not in core.bindings:
        raise ControlError(f"no binding for {nai!r}")
    bce = core.bindings[nai]
    row: dict[str, object] = {
        "nai": nai,
        "hoa": str(bce.hoa) if bce.hoa is not None else None,  # None: an IPv6-only binding
        "prefix": str(bce.prefix) if bce.prefix is not None else None,
        "dmpa": str(bce.dmpa),
    }
    node.runner.submit(core.clear(nai, node.clock.now(), node.clock.wall()))
    return [row]


def detach(node: Node, request: dict[str, Any]) -> dict[str, object]:
    """``netlmm detach MAC`` (DMPA): the MS is de-registered at its DLMAP and forgotten here
    (its next frame starts a new attach)."""
    if not isinstance(node, DMPANode):
        raise ControlError("MSs are detached at their DMPA (the DLMAP clears: netlmm clear)")
    try:
        mac = MacAddress.parse(str(request.get("mac", "")))
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    visitor = node.core.visitor(mac)
    if visitor is None:
        raise ControlError(f"no MS {mac} here")
    row: dict[str, object] = {"mac": str(mac), "nai": visitor.nai, "state": visitor.state.value}
    now = node.clock.now()
    said = event("detached_by_operator", mac=mac, nai=visitor.nai, hoa=visitor.hoa)
    node.runner.submit([said, *node.core.detach(mac, now, node.clock.wall())])
    return row
