"""A short fuzz campaign (``make fuzz`` runs the full one): 20,000 mutated and random MH
messages, tunnel packets and access frames into a running DLMAP and DMPA while the MS pings the
CN. Both processes must live, the dispatch boundary must have caught nothing, the MS's binding
must stay and its pings must get through."""

from __future__ import annotations

import pytest

from netlmm_lab.fuzz import KINDS, fuzz

pytestmark = pytest.mark.root


def test_short_fuzz_campaign(root: None) -> None:
    result = fuzz(inputs=20_000, rate=20_000, seed=8, quiet=True)
    assert result.problems == []
    assert result.ok
    assert result.inputs >= 19_800
    assert all(result.sent.get(kind, 0) > 1000 for kind in KINDS), result.sent
    assert result.alive == {"dlmap": True, "dmpa1": True, "dmpa2": True}
    assert result.internal_error == {"dlmap": 0, "dmpa1": 0}
    assert result.handler_error == {"dlmap": 0, "dmpa1": 0}
    assert result.ping["received"] > 0
    # the inputs reached the appliance's parsers, not just the wire
    dlmap, dmpa = result.counters["dlmap"], result.counters["dmpa1"]
    assert dlmap.get("mh_socket.rx", 0) > 1000, dlmap
    assert dmpa.get("mh_socket.rx", 0) > 1000, dmpa
    assert sum(v for k, v in dlmap.items() if k.startswith("node.mh.malformed.")) > 0
    assert sum(v for k, v in dmpa.items() if k.startswith("access.")) > 1000
