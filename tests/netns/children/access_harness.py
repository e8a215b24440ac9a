"""Inside the DMPA-side namespace of ``tests/netns/test_access_host.py``: read the TAP, answer
with the access services. ``python -m tests.netns.children.access_harness TAP MODE SECONDS``.

It plays AAA (accepts every MS with ``MODE``: static, dlmap or dhcp) and the DLMAP (accepts
every PBU with the test's HoA), so the only real peer is the MS's host stack. Prints ``ready``,
then serves; bounded: stops on stdin EOF, after ``SECONDS`` or after 5000 frames, then prints
its counters and visitors as one JSON line.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time

from pytun import IFF_NO_PI, IFF_TAP, TunTapDevice

from router.core.actions import AAARequest, SendFrame, SendMH
from router.core.dmpa import AddressMode, Profile
from router.services.access import AccessAction
from router.services.dhcp_dmpa import DhcpDmpaConfig
from router.wire.mh import BindingUpdate
from tests.netns.access_helpers import DLMAP, DNS, DOMAIN, HOA, NAI, grant, stack

MAX_FRAMES = 5000
MODES: dict[str, AddressMode] = {"static": "static", "dlmap": "dlmap", "dhcp": "dhcp"}


def serve(tap_name: str, mode: AddressMode, seconds: float) -> None:
    tap = TunTapDevice(name=tap_name, flags=IFF_TAP | IFF_NO_PI)
    node, dispatch = stack(DhcpDmpaConfig(dns_servers=(DNS,), domain_name=DOMAIN))
    print("ready", flush=True)
    fd: int = tap.fileno()
    end, seen = time.monotonic() + seconds, 0
    while time.monotonic() < end and seen < MAX_FRAMES:
        ready, _, _ = select.select([fd, sys.stdin], [], [], 0.2)
        if sys.stdin in ready and not sys.stdin.readline():
            break
        if fd not in ready:
            continue
        frame, seen = os.read(fd, 65535), seen + 1
        now, wall = time.monotonic(), time.time()
        pending: list[AccessAction] = list(dispatch.receive_frame(frame, 0, now, wall))
        while pending:
            action = pending.pop(0)
            if isinstance(action, SendFrame):
                os.write(fd, action.frame)
            elif isinstance(action, AAARequest):
                hoa = HOA if mode == "static" else None
                profile = Profile(NAI, mode, DLMAP, hoa)
                pending += node.aaa_result(action.mac, profile, now, wall)
            elif isinstance(action, SendMH) and isinstance(action.message, BindingUpdate):
                for mac, visitor in list(node.visitors.items()):
                    if visitor.pending == action.message.sequence and action.message.lifetime:
                        pending += grant(node, mac, HOA, now)
    states = {str(m): (v.state.value, str(v.hoa)) for m, v in node.visitors.items()}
    report = {"counters": dict(dispatch.counters), "visitors": states, "frames": seen}
    print(json.dumps(report), flush=True)


def main(argv: list[str]) -> None:
    if argv[1] not in MODES:
        raise SystemExit(f"mode is one of {', '.join(MODES)}, not {argv[1]!r}")
    serve(argv[0], MODES[argv[1]], float(argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
