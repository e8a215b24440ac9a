"""The RADIUS client against real FreeRADIUS servers, in namespaces of our own.

One lab per module (see ``tests/netns/radius``): an HAAA answering from its users file, a VAAA
proxying realm ``home.example`` to it, and the client (``tests/netns/children/radius_client.py``)
run inside the NAS namespace, one process per case. Fake servers (silent, or answering with bad
replies) live in that process too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.netns.children import REPO, child_argv
from tests.netns.radius import HAAA6, NAS_SECRET, VAAA4, VAAA6, RadiusLab, log_of

pytestmark = pytest.mark.root

HAAA = {"address": HAAA6, "port": 1812, "secret": NAS_SECRET}
VAAA = {"address": VAAA4, "port": 1812, "secret": NAS_SECRET}
DLMAP = "2001:db8:5::10"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadiusLab]:
    # Module scope runs before the function-scoped ``root`` fixture: check here as well.
    require(os.geteuid() == 0, "needs root for network namespaces and raw sockets")
    require(shutil.which("freeradius") is not None, "freeradius is not installed (make test)")
    with RadiusLab(tmp_path_factory.mktemp("radius")) as made:
        made.start_servers()
        yield made


def authenticate(lab: RadiusLab, process_timeout: float = 60, **spec: Any) -> dict[str, Any]:
    argv = child_argv("radius_client", json.dumps(spec))
    out = lab.exec("nas", argv, cwd=REPO, timeout=process_timeout).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_accept_with_static_hoa(root: None, lab: RadiusLab) -> None:
    got = authenticate(lab, servers=[HAAA], mac="02:00:5e:00:00:01", nai="static@home.example")
    assert got["result"] == "accept", got
    assert got["profile"] == {
        "nai": "static@home.example",
        "mode": "static",
        "dlmap": DLMAP,
        "hoa": "192.0.2.77",
        "gateway": "192.0.2.1",
    }
    assert got["dhcp4_server"] == "192.0.2.3"
    assert got["server"] == HAAA6
    assert got["counters"] == {"requests": 1, "sent": 1, "accept": 1}
    # What the server received: our identity attributes, and a Message-Authenticator it checked.
    log = log_of(lab.haaa)
    assert 'Calling-Station-Id = "02-00-5E-00-00-01"' in log
    assert 'NAS-Identifier = "dmpa-test"' in log
    assert "NAS-IPv6-Address = 2001:db8:5::1" in log


def test_accept_by_mac_identity_with_framed_ip_address(root: None, lab: RadiusLab) -> None:
    got = authenticate(lab, servers=[HAAA], mac="02:00:5e:00:00:02")
    assert got["result"] == "accept", got
    assert got["profile"]["nai"] == "mac2@home.example"
    assert got["profile"]["mode"] == "static"
    assert got["profile"]["hoa"] == "192.0.2.78"


@pytest.mark.parametrize("dynamic_mode", ["dlmap", "dhcp"])
def test_accept_with_dynamic_assignment(root: None, lab: RadiusLab, dynamic_mode: str) -> None:
    got = authenticate(
        lab,
        servers=[HAAA],
        mac="02:00:5e:00:00:03",
        nai="dynamic@home.example",
        dynamic_mode=dynamic_mode,
    )
    assert got["result"] == "accept", got
    assert got["profile"] == {
        "nai": "dynamic@home.example",
        "mode": dynamic_mode,
        "dlmap": DLMAP,
        "hoa": None,
        "gateway": None,
    }


@pytest.mark.parametrize("nai", ["blocked@home.example", "stranger@home.example", None])
def test_reject(root: None, lab: RadiusLab, nai: str | None) -> None:
    got = authenticate(lab, servers=[HAAA], mac="02:00:5e:00:00:04", nai=nai)
    assert got["result"] == "reject", got
    assert got["profile"] is None
    assert got["counters"] == {"requests": 1, "sent": 1, "reject": 1}


def test_many_at_once_share_one_socket(root: None, lab: RadiusLab) -> None:
    nais = ["static@home.example", "dynamic@home.example", "blocked@home.example"] * 20
    got = authenticate(lab, servers=[HAAA], mac="02:00:5e:00:00:0c", concurrent=nais)
    expected = {
        "static@home.example": ["accept", "static@home.example"],
        "dynamic@home.example": ["accept", "dynamic@home.example"],
        "blocked@home.example": ["reject", None],
    }
    assert got["results"] == [expected[n] for n in nais]
    assert got["counters"] == {"requests": 60, "sent": 60, "accept": 40, "reject": 20}


def test_no_answer_times_out_within_the_bound(root: None, lab: RadiusLab) -> None:
    silent = {"address": "::1", "port": 11812, "secret": NAS_SECRET}
    got = authenticate(
        lab,
        servers=[silent],
        fake={**silent, "behaviour": "silent"},
        mac="02:00:5e:00:00:05",
        timeout=0.3,
        retries=2,
    )
    assert got["result"] == "timeout" and got["profile"] is None, got
    assert got["counters"] == {"requests": 1, "sent": 3, "retransmissions": 2, "timeout": 1}
    assert got["fake_requests"] == 3
    assert got["max_wait"] == pytest.approx(0.9)
    assert 0.85 <= got["elapsed"] <= got["max_wait"] + 0.5


def test_real_server_with_another_secret_does_not_answer(root: None, lab: RadiusLab) -> None:
    # FreeRADIUS checks our Message-Authenticator and silently drops the request.
    wrong = {**HAAA, "secret": "not-the-secret"}
    got = authenticate(lab, servers=[wrong], mac="02:00:5e:00:00:06", timeout=0.5, retries=0)
    assert got["result"] == "timeout", got
    assert got["counters"] == {"requests": 1, "sent": 1, "timeout": 1}


def test_failover_to_the_second_server(root: None, lab: RadiusLab) -> None:
    silent = {"address": "::1", "port": 11813, "secret": NAS_SECRET}
    got = authenticate(
        lab,
        servers=[silent, HAAA],
        fake={**silent, "behaviour": "silent"},
        mac="02:00:5e:00:00:07",
        nai="static@home.example",
        timeout=0.3,
        retries=1,
    )
    assert got["result"] == "accept" and got["server"] == HAAA6, got
    assert got["counters"] == {
        "requests": 1,
        "sent": 3,
        "retransmissions": 1,
        "failovers": 1,
        "accept": 1,
    }


BAD_DROPS = {
    "drop_unknown_id": 1,
    "drop_bad_authenticator": 1,
    "drop_missing_message_authenticator": 1,
    "drop_bad_message_authenticator": 1,
}


def test_bad_replies_are_dropped_and_counted_then_the_good_one_wins(
    root: None, lab: RadiusLab
) -> None:
    fake = {"address": "::1", "port": 11814, "secret": NAS_SECRET}
    got = authenticate(
        lab,
        servers=[fake],
        fake={**fake, "behaviour": "bad_then_good"},
        mac="02:00:5e:00:00:08",
        timeout=2.0,
        retries=0,
    )
    assert got["result"] == "accept", got
    assert got["profile"]["nai"] == "fake@home.example"
    assert got["counters"] == {"requests": 1, "sent": 1, "accept": 1, **BAD_DROPS}


def test_only_bad_replies_is_a_timeout(root: None, lab: RadiusLab) -> None:
    fake = {"address": "::1", "port": 11815, "secret": NAS_SECRET}
    got = authenticate(
        lab,
        servers=[fake],
        fake={**fake, "behaviour": "bad"},
        mac="02:00:5e:00:00:09",
        timeout=0.3,
        retries=1,
    )
    assert got["result"] == "timeout" and got["profile"] is None, got
    twice = {name: 2 * n for name, n in BAD_DROPS.items()}
    assert got["counters"] == {
        "requests": 1,
        "sent": 2,
        "retransmissions": 1,
        "timeout": 1,
        **twice,
    }


def test_through_the_visited_aaa_proxy_by_realm(root: None, lab: RadiusLab) -> None:
    got = authenticate(
        lab, servers=[VAAA], mac="02:00:5e:00:00:0a", nai="static@home.example", front=True
    )
    assert got["result"] == "accept", got
    assert got["profile"]["mode"] == "static" and got["profile"]["hoa"] == "192.0.2.77"
    assert got["counters"] == {"requests": 1, "sent": 1, "accept": 1}
    # The VAAA proxied it (realm match) and the HAAA got it from the VAAA, with the NAI whole.
    assert re.search(r"Proxying request to home server " + re.escape(HAAA6), log_of(lab.vaaa))
    assert re.search(
        r"Received Access-Request .* from \[" + re.escape(VAAA6) + r"\]", log_of(lab.haaa)
    )
    assert 'User-Name = "static@home.example"' in log_of(lab.haaa)


def test_mac_identity_with_realm_through_the_proxy(root: None, lab: RadiusLab) -> None:
    got = authenticate(lab, servers=[VAAA], mac="02:00:5e:00:00:02", mac_realm="home.example")
    assert got["result"] == "accept", got
    assert got["profile"]["nai"] == "mac2@home.example" and got["profile"]["hoa"] == "192.0.2.78"


def test_proxy_rejects_a_realm_it_does_not_serve(root: None, lab: RadiusLab) -> None:
    got = authenticate(lab, servers=[VAAA], mac="02:00:5e:00:00:0b", nai="someone@elsewhere.test")
    assert got["result"] == "reject", got


PPP_NAI = "ppp@home.example"


@pytest.mark.parametrize(
    ("proof", "result"),
    [
        ({"password": "ppp-secret-1"}, "accept"),
        ({"password": "wrong"}, "reject"),
        ({"chap_secret": "ppp-secret-1"}, "accept"),
        ({"chap_secret": "wrong"}, "reject"),
    ],
)
def test_a_ppp_ms_credentials_are_checked(
    root: None, lab: RadiusLab, proof: dict[str, str], result: str
) -> None:
    """Seed 4.1: the PAP password (User-Password, hidden with the secret) or the CHAP-MD5
    response (CHAP-Password + CHAP-Challenge) goes to the home AAA, which checks it."""
    for server in (HAAA, VAAA):  # directly, and through the visited AAA's realm proxy
        got = authenticate(lab, servers=[server], mac="02:00:5e:00:00:09", nai=PPP_NAI, **proof)
        assert got["result"] == result, got
        if result == "accept":
            assert got["profile"]["nai"] == PPP_NAI and got["profile"]["mode"] == "dhcp"
