"""A short soak (``make soak`` runs the full one): 1,000 simulated MSs from the load generator
attach, refresh, hand over and leave in about 30 seconds next to two real MSs; the DLMAP's
binding cache must match the generator's view exactly and no appliance process may gain or
lose an open fd."""

from __future__ import annotations

import pytest

from netlmm_lab.soak import soak

pytestmark = pytest.mark.root


def test_short_soak(root: None) -> None:
    result = soak(mss=1000, minutes=0.5, real_mss=2, sample_every=2.0, quiet=True)
    assert result.problems == []
    assert result.ok
    g = result.generator
    # every simulated MS went through all its steps (the last ones stay registered)
    assert g["progress"] == {"done": 950, "kept": 50}, g
    assert g["received"]["bri"] >= 1000  # each handover revoked the old simulated DMPA
    assert g["received"]["pba.leave"] == 950
    assert result.bindings == {
        "cache_simulated": 50,
        "generator_view": 50,
        "real": 2,
        "match": True,
    }
    for role, summary in result.processes.items():
        assert summary["samples"] >= 5, role
        assert summary["fds"]["end"] == summary["fds"]["start"], (role, summary)
    assert all(p["received"] > 0 for p in result.real_ping.values()), result.real_ping
