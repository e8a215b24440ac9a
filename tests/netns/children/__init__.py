"""Programs the namespace tests run inside a namespace, one module each, run as
``python -m tests.netns.children.<name>`` from the checkout (so ruff and mypy check them like
any other code). :func:`run_child` runs one to completion; :func:`child_argv` is its command
line for a process the test keeps running.
"""

from __future__ import annotations

import sys
from pathlib import Path

from netlmm_lab import netns

#: The checkout: the children import ``tests`` and ``router`` from here.
REPO = Path(__file__).resolve().parents[3]


def child_argv(name: str, *args: str) -> list[str]:
    """``python -m tests.netns.children.<name> args`` with this interpreter."""
    return [sys.executable, "-m", f"tests.netns.children.{name}", *args]


def run_child(ns: str, name: str, *args: str, timeout: float = 60.0) -> str:
    """Run child ``name`` inside namespace ``ns`` to completion; its stdout (an
    AssertionError with its stderr if it fails)."""
    result = netns.run(ns, child_argv(name, *args), timeout=timeout, check=False, cwd=REPO)
    if result.returncode != 0:
        raise AssertionError(f"{name} in {ns}: exit {result.returncode}\n{result.stderr}")
    return result.stdout
