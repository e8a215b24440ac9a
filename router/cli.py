"""The ``netlmm`` command line.

What exists today: ``netlmm version`` and ``netlmm decode``, which decodes a Mobility Header
given in hex (from a capture, a log, a test vector) in either dialect. The appliance itself
(``run``, ``check-config``, ``show``, ``lab``) arrives with the appliance issue; asking for it
says so instead of pretending.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from ipaddress import AddressValueError, IPv6Address
from pathlib import Path

from router import __version__
from router.wire.dialect import DIALECTS
from router.wire.errors import DecodeError
from router.wire.mh import decode_message

NOT_YET = ("run", "show", "lab")


def _decode(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.hex == "-" else args.hex
    try:
        data = bytes.fromhex("".join(text.split()))
    except ValueError:
        print("netlmm decode: not hex", file=sys.stderr)
        return 2
    try:
        src = IPv6Address(args.src) if args.src else None
        dst = IPv6Address(args.dst) if args.dst else None
    except AddressValueError as exc:
        print(f"netlmm decode: {exc}", file=sys.stderr)
        return 2
    try:
        message = decode_message(data, DIALECTS[args.dialect], src=src, dst=dst)
    except DecodeError as exc:
        print(f"netlmm decode: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{type(message).__name__} ({args.dialect} dialect)")
    for name in message.__dataclass_fields__:  # type: ignore[attr-defined]
        if name == "options":
            continue
        value = getattr(message, name)
        print(f"  {name}: {value:#06x}" if name == "flags" else f"  {name}: {value}")
    for option in message.options:
        print(f"  option {option.option_type}: {option}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    """Every error (exit 2) and warning of one ini file; a one-line summary when it is usable."""
    from router.app import config  # here: the other commands do not need the app layer

    try:
        settings, warnings = config.load(args.file)
    except config.ConfigErrors as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        for warning in exc.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.file}: ok: {config.summary(settings)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netlmm", description="IPv4/netlmm6/IPv4 router appliance (DMPA and DLMAP roles)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    decode = sub.add_parser("decode", help="decode a Mobility Header given in hex")
    decode.add_argument("hex", help="the MH bytes in hex (whitespace allowed), or - for stdin")
    decode.add_argument("--dialect", choices=sorted(DIALECTS), default="draft")
    decode.add_argument("--src", help="IPv6 source, to verify the checksum (with --dst)")
    decode.add_argument("--dst", help="IPv6 destination, to verify the checksum (with --src)")
    check = sub.add_parser("check-config", help="check an ini file: every error at once")
    check.add_argument("file", type=Path, help="the ini file (see etc/dmpa.ini, etc/dlmap.ini)")
    for name in NOT_YET:
        sub.add_parser(name, help="not implemented yet (arrives with the appliance)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"netlmm {__version__}")
        return 0
    if args.command == "decode":
        return _decode(args)
    if args.command == "check-config":
        return _check_config(args)
    print(f"netlmm {args.command}: not implemented yet; see README.md", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
