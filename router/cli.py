"""The ``netlmm`` command line.

* ``netlmm run -c FILE``: the appliance, in the role its ini file names, until SIGTERM/SIGINT.
* ``netlmm check-config FILE``: every error at once (``section.key: message``, exit 2).
* ``netlmm show bindings|visitors|counters [--json] [-c FILE | --socket PATH]``: asks a running
  appliance through its control socket.
* ``netlmm lab ...``: the network-namespace lab (see ``netlmm lab --help``).
* ``netlmm decode HEX``: decodes a Mobility Header (from a capture, a log, a test vector).
* ``netlmm version``.
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

NOT_YET: tuple[str, ...] = ()


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


def _load(path: Path) -> object | None:
    from router.app import config

    try:
        settings, warnings = config.load(path)
    except config.ConfigErrors as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings


def _run(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return 2
    from router.app.run import run

    return run(settings, fastpath=args.fastpath)  # type: ignore[arg-type]


def _show(args: argparse.Namespace) -> int:
    import json

    from router.adapters.control import ControlClient, ControlError

    path = args.socket
    if path is None:
        settings = _load(args.config)
        if settings is None:
            return 2
        path = settings.node.control_socket  # type: ignore[attr-defined]
    try:
        reply = ControlClient(Path(path)).request({"command": "show", "what": args.what})
    except ControlError as exc:
        print(f"netlmm show: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"netlmm show: {reply.get('error')}", file=sys.stderr)
        return 1
    result = reply["result"]
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(_table(result))
    return 0


def _table(result: object) -> str:
    """Rows of dicts as an aligned table; nested dicts as indented ``key value`` lines."""
    if isinstance(result, list):
        if not result:
            return "(none)"
        columns = list(result[0])
        cells = [[str(row.get(c, "")) for c in columns] for row in result]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(line.rstrip() for line in lines)
    if isinstance(result, dict):
        lines = []
        for key in sorted(result):
            value = result[key]
            if isinstance(value, dict):
                lines.append(f"{key}:")
                lines += [f"  {k} {value[k]}" for k in sorted(value)]
            else:
                lines.append(f"{key} {value}")
        return "\n".join(lines)
    return str(result)


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
    run = sub.add_parser("run", help="run the appliance (role from the ini file)")
    run.add_argument("-c", "--config", type=Path, required=True, help="the ini file")
    run.add_argument(
        "--fastpath",
        choices=("auto", "compiled", "reference"),
        default="auto",
        help="data-plane twin (default: compiled when built)",
    )
    show = sub.add_parser("show", help="ask a running appliance")
    show.add_argument("what", choices=("bindings", "visitors", "counters"))
    where = show.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--config", type=Path, help="its ini file (for the socket path)")
    where.add_argument("--socket", type=Path, help="its control socket")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    from router.lab.cli import add_lab_parser

    add_lab_parser(sub)
    for name in NOT_YET:
        sub.add_parser(name, help="not implemented yet")
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
    if args.command == "run":
        return _run(args)
    if args.command == "show":
        return _show(args)
    if args.command == "lab":
        from router.lab.cli import lab_main

        return lab_main(args)
    print(f"netlmm {args.command}: not implemented yet; see README.md", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
