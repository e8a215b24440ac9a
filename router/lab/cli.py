"""``netlmm lab``: the network-namespace lab (issue 6). Filled in by the lab demo."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_lab_parser(sub: Any) -> None:
    lab = sub.add_parser("lab", help="the network-namespace lab: demo, up, down")
    lab.add_argument("action", choices=("demo", "up", "down"))


def lab_main(args: argparse.Namespace) -> int:
    print("netlmm lab: not implemented yet", file=sys.stderr)
    return 2
