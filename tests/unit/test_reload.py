"""SIGHUP's reload: what it applies at once (log level, profiles), what it reports as needing a
restart (named by its ini key), and a refused file that changes nothing."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from router.adapters.store import Store
from router.app import config, logs
from router.app.operations import flatten, reload
from router.app.settings import DMPASettings
from router.core.dmpa import State
from router.wire.ethernet import MacAddress
from tests.unit.nodes import DMPA_INI, dmpa_node


def test_reload_applies_level_and_profiles_and_reports_the_rest(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m1.ini"
    path.write_text(DMPA_INI)
    settings, _ = config.load(path)
    assert isinstance(settings, DMPASettings)
    node = dmpa_node(settings, Store(tmp_path / "m1.sqlite"), loop)
    aaa = node.aaa
    bob = MacAddress.parse("02:00:00:00:0b:01")
    try:
        caplog.set_level(logging.INFO)
        assert asyncio.run(aaa.authenticate(bob)) is None
        text = DMPA_INI.replace("[dmpa]\n", "[dmpa]\nlifetime = 1200\n")
        text = text.replace("log_format = json", "log_format = json\nlog_level = warning")
        path.write_text(text + f"[profile bob@example.org]\nmac = {bob}\n")
        applied = reload(node, path, log_format="json")
        assert applied == ["profile bob@example.org", "node.log_level"]
        assert logging.getLogger().level == logging.WARNING
        assert "reload_needs_restart key=dmpa.lifetime" in caplog.text
        assert node.settings.lifetime == 3600 and node.settings.node.log_level == "warning"
        profile = asyncio.run(aaa.authenticate(bob))
        assert profile is not None and profile.nai == "bob@example.org"
        caplog.clear()
        path.write_text(text.replace("lifetime = 1200", "lifetime = banana"))
        assert reload(node, path) == []  # refused whole: nothing changes
        assert "reload_refused" in caplog.text and "dmpa.lifetime" in caplog.text
        assert node.settings.node.log_level == "warning"
    finally:
        logs.set_level("warning")
        node.store.close()


def test_reload_names_a_changed_limit_by_its_ini_key(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """A changed [limits] key needs a restart: the log line must name it as the ini file does
    (limits.arp_rate), not as a settings field (dmpa.limits) no operator can find."""
    path = tmp_path / "m1.ini"
    path.write_text(DMPA_INI + "[limits]\narp_rate = 20\n")
    settings, _ = config.load(path)
    assert isinstance(settings, DMPASettings)
    node = dmpa_node(settings, Store(tmp_path / "m1.sqlite"), loop)
    try:
        caplog.set_level(logging.INFO)
        path.write_text(DMPA_INI + "[limits]\narp_rate = 5\ntable_size = 100\n")
        assert reload(node, path) == []
        restart = [
            r.getMessage() for r in caplog.records if "reload_needs_restart" in r.getMessage()
        ]
        assert restart == [
            "reload_needs_restart key=limits.arp_rate",
            "reload_needs_restart key=limits.table_size",
        ]
        view = flatten(settings)
        assert view["limits.arp_burst"] == 50 and view["limits.new_mac_rate"] == 20.0
        assert "limits.pbu_new_nai_rate" not in view  # a DLMAP's limit: no key of a DMPA
        assert "dmpa.limits" not in view
    finally:
        node.store.close()


def test_a_profile_added_by_reload_admits_an_ms_refused_before(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """The DMPA keeps the entry of a MAC that AAA refused, so its frames do not ask AAA again
    (router/core/limits.py, Rule 4); nothing removed it but table_size other strangers. A
    reload that adds the MS's profile therefore changed nothing for it until a restart, though
    the profiles are 'applied at once'. The refused entries are forgotten when the profiles
    change: the next frame asks AAA again."""
    path = tmp_path / "m1.ini"
    path.write_text(DMPA_INI)
    settings, _ = config.load(path)
    assert isinstance(settings, DMPASettings)
    node = dmpa_node(settings, Store(tmp_path / "m1.sqlite"), loop)
    bob = MacAddress.parse("02:00:00:00:0b:01")
    try:
        node.core.attach(bob, 0, 100.0)
        node.core.aaa_result(bob, None, 100.0, 1e9)  # AAA: no profile for bob
        assert node.core.visitors[bob].state is State.REJECTED
        path.write_text(DMPA_INI + f"[profile bob@example.org]\nmac = {bob}\n")
        assert reload(node, path) == ["profile bob@example.org"]
        node.runner.flush()
        assert bob not in node.core.visitors  # its next frame attaches and asks AAA again
        assert node.access.counters["aaa_rejected_forgotten"] == 1
    finally:
        node.store.close()
