"""Shared test plumbing.

Tests that need something the machine may lack (root, tshark) call :func:`require`. On a
developer's machine a missing piece skips with its reason printed (``-ra``); in CI
(``NETLMM_REQUIRE_ALL=1``, set by ``.ci/run``) it fails instead, so nothing is skipped silently.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL = os.environ.get("NETLMM_REQUIRE_ALL") == "1"
#: The long failover variants (tests/ha/) run with ``make ha`` only (NETLMM_HA=1): not
#: collected otherwise, so nothing is skipped.
collect_ignore = [] if os.environ.get("NETLMM_HA") == "1" else ["ha"]


def require(condition: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI) unless ``condition`` holds."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI but missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def root() -> None:
    """The test needs root (network namespaces, raw sockets)."""
    require(os.geteuid() == 0, "needs root for network namespaces and raw sockets")


@pytest.fixture(scope="session")
def tshark_path() -> str:
    """Path of the tshark binary (installed by ``make test``)."""
    path = shutil.which("tshark")
    require(path is not None, "tshark is not installed (make test installs it as root)")
    assert path is not None
    return path


# A real PostgreSQL (tests/pg.py): the session's server and a fresh database per test.
from tests.pg import pg_dsn, postgres, postgres_binaries  # noqa: E402, F401
