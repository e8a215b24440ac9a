"""The ``netlmm`` command line.

* ``netlmm run -c FILE``: the appliance, in the role its ini file names, until SIGTERM/SIGINT.
* ``netlmm check-config FILE``: every error at once (``section.key: message``, exit 2).
* ``netlmm show bindings|visitors|peers|counters|config|ha [--json] [-c FILE | --socket PATH]``:
  asks a running appliance through its control socket (``peers``: :mod:`router.app.peers`).
  ``bindings`` filters with ``--nai``, ``--hoa``,
  ``--dmpa``; ``counters`` lists the non-zero ones unless ``--all``; ``config`` is the effective
  settings with the secrets left out.
* ``netlmm trace (-r PCAP | -i IFACE [--netns NS]) [--nai|--hoa|--mac ...]``: one MS's signaling
  and DHCP, decoded (:mod:`router.app.trace`).
* ``netlmm lab ...``: the network-namespace lab (see ``netlmm lab --help``), from the
  netlmm-lab package (``lab/``; not part of the appliance): imported only for ``netlmm lab``,
  which says how to install it where it is missing.
* ``netlmm reload``: the running node re-reads its ini file and says what it applied and what
  waits for a restart (exit 1 when the file is refused: ``systemctl reload`` fails).
* ``netlmm clear binding --nai NAI | --hoa HOA`` (DLMAP): the binding goes, revoked at its DMPA;
  ``netlmm detach MAC`` (DMPA): the MS is de-registered and forgotten.
* ``netlmm decode HEX``: decodes a Mobility Header (from a capture, a log, a test vector).
* ``netlmm keygen FILE [--force]``: an RFC 4285 key file with a fresh SPI and key (mode 600), to
  copy to every node of the domain; it says the SPI the [peer] sections name.
* ``netlmm version`` (and ``netlmm --version``); ``netlmm example dmpa|dlmap|unit`` prints an
  example ini file or the systemd unit, as installed with the package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from ipaddress import AddressValueError, IPv6Address
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from router import __version__

NOT_YET: tuple[str, ...] = ()
#: Where ``control_socket`` is by default (router.app.config.schema.RUN_ROOT, not imported
#: here: ``attach`` must start fast).
RUN_ROOT = Path("/run/netlmm")
#: ``netlmm lab`` in ``netlmm --help``; its own options come with the netlmm-lab package.
LAB_HELP = "the network-namespace lab: demo, up, down, bench, fuzz, soak"
LAB_MISSING = "netlmm lab needs the netlmm-lab package: pip install -e ./lab"


def _lab_cli() -> ModuleType | None:
    """The lab's command line (``netlmm_lab.cli``), or None where the netlmm-lab package is not
    installed (an appliance installed from its wheel alone)."""
    try:
        return importlib.import_module("netlmm_lab.cli")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "netlmm_lab":
            return None
        raise


def _decode(args: argparse.Namespace) -> int:
    from router.wire.dialect import DIALECTS
    from router.wire.errors import DecodeError
    from router.wire.mh import decode_message

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
    from router.app.trace import mh_fields, option_text  # one formatter with netlmm trace

    print(f"{type(message).__name__} ({args.dialect} dialect)")
    for name, value in mh_fields(message).items():
        print(f"  {name}: {value}")
    for option in message.options:
        print(f"  option {option.option_type}: {option_text(option)}")
    return 0


#: ``netlmm example NAME``: the examples installed with the package (router/examples, the
#: same files as etc/ in the source tree).
EXAMPLES = {"dmpa": "dmpa.ini", "dlmap": "dlmap.ini", "unit": "netlmm@.service"}


def _example(args: argparse.Namespace) -> int:
    from importlib import resources

    text = resources.files("router").joinpath("examples", EXAMPLES[args.which]).read_text()
    sys.stdout.write(text)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    """``netlmm keygen FILE``: write the key file, say the lines the ini files need."""
    from router.adapters.keyfile import write_key_file

    path: Path = args.file
    try:
        spi = write_key_file(path, force=args.force)
    except FileExistsError:
        print(f"netlmm keygen: {path} exists (--force replaces its keys)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"netlmm keygen: {path}: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 1
    print(
        f"wrote {path} (mode 600): SPI {spi} and a fresh key.\n"
        "Copy it, mode 600, to every node of the domain, and in each ini file put\n"
        f"  [node]    key_file = {path}\n"
        "  [peer ...] (every one)\n"
        f"  spi = {spi}"
    )
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
    from router.app.preflight import check_host

    errors, host_warnings = check_host(settings)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    for warning in [*warnings, *host_warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    if errors:
        return 2
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
    """``netlmm run``: the configuration's errors and warnings, then the node, all through the
    node's log formatter (text or JSON, journald priorities); so is a crash's traceback."""
    import logging

    from router.app import config, logs

    log = logging.getLogger("netlmm")
    try:
        settings, warnings = config.load(args.config)
    except config.ConfigErrors as exc:
        logs.setup("info", args.log_format or "text")
        for problem in exc.problems:
            log.error("config_error problem=%s", problem)
        for warning in exc.warnings:
            log.warning("config_warning warning=%s", warning)
        return 2
    logs.setup(settings.node.log_level, args.log_format or settings.node.log_format)
    for warning in warnings:
        log.warning("config_warning warning=%s", warning)

    def crashed(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        log.critical("crashed error=%s", f"{kind.__name__}: {value}", exc_info=(kind, value, tb))

    sys.excepthook = crashed
    from router.app.run import run

    return run(
        settings,
        fastpath=args.fastpath,
        config_path=args.config,
        log_format=args.log_format,
    )


def _socket_path(args: argparse.Namespace) -> Path | None:
    """The control socket: ``--socket``, or the one ``-c FILE`` names (None: a bad file)."""
    if args.socket is not None:
        return Path(args.socket)
    settings = _load(args.config)
    if settings is None:
        return None
    return Path(settings.node.control_socket)  # type: ignore[attr-defined]


def _attach(args: argparse.Namespace) -> int:
    from router.adapters.control_client import ControlClient, ControlError

    path = _attach_socket(args)
    if path is None:
        return 2
    request = {"command": "associated", "mac": args.mac, "link": args.link}
    try:
        reply = ControlClient(path).request(request)
    except ControlError as exc:
        print(f"netlmm attach: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"netlmm attach: {reply.get('error')}", file=sys.stderr)
        return 1
    result = reply["result"]
    print(f"{result['mac']} on {result['link']}: {result['state']}")
    return 0


def _attach_socket(args: argparse.Namespace) -> Path | None:
    """``attach``'s control socket without loading the whole configuration (an access point's
    hook runs it at every association: the app layer's imports would be most of its time):
    ``--socket``, or ``[node] control_socket`` of the ini file, or its default from
    ``[node] name``. The node that runs the file has checked it."""
    if args.socket is not None:
        return Path(args.socket)
    import configparser

    parser = configparser.ConfigParser(
        interpolation=None,
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";", "#"),
        strict=False,
    )
    try:
        parser.read_string(Path(args.config).read_text(encoding="utf-8"))
        node = parser["node"]
    except (OSError, UnicodeDecodeError, configparser.Error, KeyError) as exc:
        print(f"netlmm attach: {args.config}: no usable [node] section ({exc})", file=sys.stderr)
        return None
    if node.get("control_socket"):
        return Path(node["control_socket"])
    if node.get("name"):
        return RUN_ROOT / f"{node['name']}.sock"
    print(f"netlmm attach: {args.config}: [node] has no name", file=sys.stderr)
    return None


def _attach_parser() -> argparse.ArgumentParser:
    attach = argparse.ArgumentParser(
        prog="netlmm attach",
        description="DMPA: report a station's association with an access link "
        "(an access point's hook)",
    )
    attach.add_argument("mac", help="the station's MAC address")
    attach.add_argument("--link", help="the access link (a name of [dmpa] access; optional if one)")
    where = attach.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--config", type=Path, help="the DMPA's ini file (for the socket)")
    where.add_argument("--socket", type=Path, help="the DMPA's control socket")
    return attach


def _ask(args: argparse.Namespace, request: dict[str, object]) -> dict[str, object] | int:
    """One request to the running node: its reply, or the exit status after saying why not."""
    from router.adapters.control import ControlClient, ControlError

    path = _socket_path(args)
    if path is None:
        return 2
    try:
        return ControlClient(path, timeout=15.0).request(request)
    except ControlError as exc:
        print(f"netlmm {args.command}: {exc}", file=sys.stderr)
        return 1


def _reload(args: argparse.Namespace) -> int:
    """``netlmm reload``: the node re-reads its ini file; what it did, exit 1 if refused."""
    reply = _ask(args, {"command": "reload"})
    if isinstance(reply, int):
        return reply
    result = reply.get("result")
    if not isinstance(result, dict):
        print(f"netlmm reload: {reply.get('error')}", file=sys.stderr)
        return 1
    for problem in result["refused"]:
        print(f"refused: {problem}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if result["keys"] is False:
        print("refused: node.key_file: the old keys stay (see the log)", file=sys.stderr)
    if result["refused"]:
        print("reload refused: nothing changed", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(result['applied']) or '-'}")
    print(f"waiting for a restart: {', '.join(result['restart']) or '-'}")
    return 0 if result["ok"] else 1


def _clear(args: argparse.Namespace) -> int:
    if (args.nai is None) == (args.hoa is None):
        print("netlmm clear binding: one of --nai, --hoa", file=sys.stderr)
        return 2
    reply = _ask(args, {"command": "clear", "nai": args.nai, "hoa": args.hoa})
    if isinstance(reply, int):
        return reply
    if not reply.get("ok"):
        print(f"netlmm clear: {reply.get('error')}", file=sys.stderr)
        return 1
    for row in reply["result"]:  # type: ignore[attr-defined]
        print(f"cleared {row['nai']} {row['hoa']} (revoked at {row['dmpa']})")
    return 0


def _detach(args: argparse.Namespace) -> int:
    reply = _ask(args, {"command": "detach", "mac": args.mac})
    if isinstance(reply, int):
        return reply
    if not reply.get("ok"):
        print(f"netlmm detach: {reply.get('error')}", file=sys.stderr)
        return 1
    row = reply["result"]
    print(f"detached {row['mac']} ({row['nai'] or 'no NAI'}, was {row['state']})")  # type: ignore[index]
    return 0


def _show(args: argparse.Namespace) -> int:
    import json

    from router.adapters.control import ControlClient, ControlError

    path = _socket_path(args)
    if path is None:
        return 2
    try:
        reply = ControlClient(path).request({"command": "show", "what": args.what})
    except ControlError as exc:
        print(f"netlmm show: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"netlmm show: {reply.get('error')}", file=sys.stderr)
        return 1
    result = reply["result"]
    if args.what == "bindings":
        try:
            result = _filter_bindings(result, args)
        except ValueError as exc:
            print(f"netlmm show: {exc}", file=sys.stderr)
            return 2
    elif args.what == "counters" and not args.all:
        result = {
            group: {k: v for k, v in values.items() if v}
            for group, values in result.items()
            if isinstance(values, dict)
        }
        result = {group: values for group, values in result.items() if values}
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    elif args.what == "bindings":
        print(_bindings_table(result, reply.get("role", "")))
    elif args.what == "peers":
        print(_peers_table(result))
    elif args.what == "config" and "sections" in result:
        from router.app.config_view import render

        print(render(result, reply.get("role", "dmpa")))
    elif args.what in ("config", "ha"):
        print("\n".join(f"{k} = {_plain(result[k])}" for k in sorted(result)))
    else:
        print(_table(result))
    return 0


def _filter_bindings(
    rows: list[dict[str, object]], args: argparse.Namespace
) -> list[dict[str, object]]:
    """``--nai`` (exact, or ``*`` wildcards), ``--hoa``, ``--dmpa``: rows that match them all."""
    import fnmatch
    from ipaddress import ip_address, ip_network

    out = rows
    if args.nai:
        out = [r for r in out if fnmatch.fnmatchcase(str(r.get("nai") or ""), args.nai)]
    if args.hoa:
        net = ip_network(args.hoa, strict=False)  # ValueError: reported by the caller
        out = [r for r in out if r.get("hoa") and ip_address(str(r["hoa"])) in net]
    if args.dmpa:
        wanted = ip_address(args.dmpa)
        out = [r for r in out if r.get("dmpa") and ip_address(str(r["dmpa"])) == wanted]
    return out


def _duration(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    seconds = int(value)
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


_BINDING_COLUMNS = {
    # role: (header, row key, formatter)
    "dlmap": (
        ("NAI", "nai", str),
        ("HOA", "hoa", str),
        ("PREFIX", "prefix", str),
        ("DMPA", "dmpa", str),
        ("AGE", "age", _duration),
        ("LEFT", "expires_in", _duration),
        ("LIFETIME", "lifetime", _duration),
        ("PACKETS", "packets", str),
    ),
    "dmpa": (
        ("NAI", "nai", str),
        ("HOA", "hoa", str),
        ("PREFIX", "prefix", str),
        ("DLMAP", "dlmap", str),
        ("MAC", "mac", str),
        ("LINK", "link", str),
        ("STATE", "state", str),
        ("AGE", "age", _duration),
        ("LIFETIME", "lifetime", _duration),
        ("PACKETS", "packets", str),
    ),
}


_PEER_COLUMNS = (
    ("PEER", "peer", str),
    ("STATE", "state", str),
    ("LAST HEARD", "last_heard", lambda v: f"{_duration(v)} ago"),
    ("MISSED", "missed", str),
    ("RESTART", "restart_counter", str),
    ("SPI", "spi", str),
    ("DIALECT", "dialect", str),
    ("BINDINGS", "bindings", str),
)


def _peers_table(rows: list[dict[str, object]]) -> str:
    """One aligned line per [peer]: state, last heartbeat, restart counter, spi, bindings."""
    if not rows:
        return "(no peers)"
    return _aligned(_PEER_COLUMNS, rows)


def _aligned(
    columns: Sequence[tuple[str, str, Callable[[Any], str]]], rows: list[dict[str, object]]
) -> str:
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        cells.append(
            [fmt(row.get(key)) if row.get(key) is not None else "-" for _, key, fmt in columns]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def _bindings_table(rows: list[dict[str, object]], role: str) -> str:
    """NAI, HoA, IPv6 prefix (dual-stack; - when none), serving node, age, lifetime left,
    packets: one aligned line per binding."""
    if not rows:
        return "(no bindings)"
    columns = _BINDING_COLUMNS.get(role, _BINDING_COLUMNS["dlmap"])
    return _aligned(columns, sorted(rows, key=lambda r: str(r.get("nai"))))


def _plain(value: object) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _trace(args: argparse.Namespace) -> int:
    from router.app.trace import TraceError, trace_main

    try:
        return trace_main(args)
    except TraceError as exc:
        print(f"netlmm trace: {exc}", file=sys.stderr)
        return 2


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


def build_parser(lab: ModuleType | None = None) -> argparse.ArgumentParser:
    """The ``netlmm`` parser; ``lab`` (``netlmm_lab.cli``) adds the ``lab`` command's options."""
    parser = argparse.ArgumentParser(
        prog="netlmm", description="IPv4/netlmm6/IPv4 router appliance (DMPA and DLMAP roles)."
    )
    parser.add_argument("--version", action="version", version=f"netlmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    example = sub.add_parser(
        "example", help="print an example file: the two ini files, the systemd unit"
    )
    example.add_argument("which", choices=EXAMPLES, help="dmpa, dlmap (ini files) or unit")
    decode = sub.add_parser("decode", help="decode a Mobility Header given in hex")
    decode.add_argument("hex", help="the MH bytes in hex (whitespace allowed), or - for stdin")
    from router.wire.dialect import DIALECTS

    decode.add_argument("--dialect", choices=sorted(DIALECTS), default="draft")
    decode.add_argument("--src", help="IPv6 source, to verify the checksum (with --dst)")
    decode.add_argument("--dst", help="IPv6 destination, to verify the checksum (with --src)")
    keygen = sub.add_parser(
        "keygen", help="write an RFC 4285 key file (mode 600) with a fresh SPI and key"
    )
    keygen.add_argument("file", type=Path, help="the key file, e.g. /etc/netlmm/netlmm.keys")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")
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
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines on stderr (default: node.log_format, text)",
    )
    show = sub.add_parser("show", help="ask a running appliance")
    show.add_argument("what", choices=("bindings", "visitors", "peers", "counters", "config", "ha"))
    where = show.add_mutually_exclusive_group(required=True)
    where.add_argument("-c", "--config", type=Path, help="its ini file (for the socket path)")
    where.add_argument("--socket", type=Path, help="its control socket")
    show.add_argument("--json", action="store_true", help="JSON instead of a table")
    show.add_argument("--nai", help="bindings: this NAI only (* and ? wildcards)")
    show.add_argument("--hoa", help="bindings: this HoA, or the HoAs in a prefix (a.b.c.d/n)")
    show.add_argument("--dmpa", help="bindings: served by this DMPA (DLMAP only)")
    show.add_argument("--all", action="store_true", help="counters: the zero ones too")
    sub.add_parser(
        "attach",
        help="DMPA: report a station's association with an access link (an access point's hook)",
        parents=[_attach_parser()],
        add_help=False,
    )
    reload = sub.add_parser(
        "reload", help="re-read a running node's ini file (what applied, what needs a restart)"
    )
    clear = sub.add_parser("clear", help="DLMAP: remove a binding, revoking it at its DMPA")
    clear.add_argument("what", choices=("binding",))
    clear.add_argument("--nai", help="the binding of this NAI")
    clear.add_argument("--hoa", help="the binding of this home address")
    detach = sub.add_parser("detach", help="DMPA: de-register an MS and forget it")
    detach.add_argument("mac", help="the MS's MAC address")
    for command in (reload, clear, detach):
        where = command.add_mutually_exclusive_group(required=True)
        where.add_argument("-c", "--config", type=Path, help="the node's ini file (for the socket)")
        where.add_argument("--socket", type=Path, help="the node's control socket")
    from router.app.trace import add_trace_parser

    add_trace_parser(sub)
    if lab is not None:
        lab.add_lab_parser(sub)
    else:
        sub.add_parser("lab", help=LAB_HELP)
    for name in NOT_YET:
        sub.add_parser(name, help="not implemented yet")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["attach"]:  # the hot path of an access point's hook: nothing else loaded
        return _attach(_attach_parser().parse_args(argv[1:]))
    lab = None
    if argv[:1] == ["lab"]:
        lab = _lab_cli()
        if lab is None:
            print(LAB_MISSING, file=sys.stderr)
            return 2
    args = build_parser(lab).parse_args(argv)
    if args.command == "version":
        print(f"netlmm {__version__}")
        return 0
    if args.command == "decode":
        return _decode(args)
    if args.command == "example":
        return _example(args)
    if args.command == "check-config":
        return _check_config(args)
    if args.command == "keygen":
        return _keygen(args)
    if args.command == "run":
        return _run(args)
    if args.command == "show":
        return _show(args)
    if args.command == "attach":
        return _attach(args)
    if args.command == "reload":
        return _reload(args)
    if args.command == "clear":
        return _clear(args)
    if args.command == "detach":
        return _detach(args)
    if args.command == "trace":
        return _trace(args)
    if args.command == "lab" and lab is not None:
        return int(lab.lab_main(args))
    print(f"netlmm {args.command}: not implemented yet; see README.md", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
