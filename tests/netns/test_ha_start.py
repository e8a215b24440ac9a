"""``store = postgresql`` at start, on a real ``netlmm run`` in a namespace: a database that
cannot be reached is one ``start_failed key=node.store_dsn`` line and exit 2, no traceback,
and nothing of the node is made."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlmm_lab import netns
from tests.conftest import require
from tests.netns.test_start_failures import failures, run_node

pytestmark = pytest.mark.root

ADDRESS = "2001:db8:5e::1"


@pytest.fixture
def host() -> Iterator[str]:
    require(os.geteuid() == 0, "needs root for network namespaces")
    with netns.namespace("hs") as ns:
        netns.ip("-n", ns, "link", "add", "tr0", "type", "veth", "peer", "name", "tr0p")
        for end in ("tr0", "tr0p"):
            netns.ip("-n", ns, "link", "set", end, "up")
        netns.ip("-n", ns, "-6", "addr", "add", f"{ADDRESS}/64", "dev", "tr0", "nodad")
        yield ns


def test_an_unreachable_database_is_one_start_failed_line(host: str, tmp_path: Path) -> None:
    nowhere = tmp_path / "nodb"  # no server listens here
    nowhere.mkdir()
    text = (
        f"[node]\nrole = dlmap\nname = hs\naddress = {ADDRESS}\n"
        f"state_dir = {tmp_path / 'state'}\ncontrol_socket = {tmp_path / 'hs.sock'}\n"
        f"log_format = json\nstore = postgresql\n"
        f"store_dsn = postgresql://netlmm@/netlmm?host={nowhere}&port=5432\n"
        "[dlmap]\ngateway = 192.0.2.1\nnetwork = 192.0.2.0/24\npool = 192.0.2.100-192.0.2.199\n"
        "[peer 2001:db8:5e::2]\ninsecure = yes\n"
    )
    ini = tmp_path / "dlmap.ini"
    ini.write_text(text)
    status, stderr = run_node(host, ini)
    nowhere.rmdir()
    assert status == 2, stderr
    assert "Traceback" not in stderr, stderr
    [record] = failures(stderr)
    assert record["key"] == "node.store_dsn", record
    assert "cannot open the database" in record["problem"], record
    assert "store_dsn" in record["fix"], record
    links = netns.ip("-n", host, "-o", "link", "show")
    assert "nlhs" not in links  # no device of the node was made
