"""Every fastpath test runs against both twins; the compiled one is never skipped in CI."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from tests.conftest import require


def load(name: str) -> ModuleType:
    if name == "reference":
        return importlib.import_module("fastpath.reference")
    try:
        return importlib.import_module("fastpath._fastpath")
    except ImportError as e:
        require(False, f"compiled fastpath not built ({e}); run make setup")
        raise


@pytest.fixture(params=["reference", "compiled"])
def fp(request: pytest.FixtureRequest) -> ModuleType:
    """The twin under test."""
    return load(request.param)


@pytest.fixture
def twins() -> tuple[ModuleType, ModuleType]:
    """Both twins, for tests that compare them."""
    return load("reference"), load("compiled")
