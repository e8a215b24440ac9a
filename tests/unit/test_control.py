"""The control channel on a temporary path: one JSON line each way, private socket file,
clear errors when nobody listens."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from router.adapters.control import (
    ControlClient,
    ControlError,
    ControlServer,
    ControlUnavailable,
)


def handler(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("command") == "show":
        return {"what": request.get("what"), "items": [1, 2]}
    if request.get("command") == "refuse":
        raise ControlError("no such thing")
    raise RuntimeError("boom")


def raw_exchange(path: Path, lines: list[bytes]) -> list[bytes]:
    """Send lines on one connection; read one answer line per request line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"".join(lines))
        buf = b""
        while buf.count(b"\n") < len(lines):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.splitlines()


def serve(path: Path, body: Any) -> Any:
    """Run ``body(path)`` in a thread while the server runs on a loop in this thread."""

    async def main() -> Any:
        async with ControlServer(path, handler):
            return await asyncio.wait_for(asyncio.to_thread(body, path), 10)

    return asyncio.run(main())


def test_request_and_answer(tmp_path: Path) -> None:
    path = tmp_path / "run" / "netlmm.sock"  # parent made by the server

    def body(p: Path) -> tuple[int, dict[str, Any]]:
        return stat.S_IMODE(p.stat().st_mode), ControlClient(p).request(
            {"command": "show", "what": "bindings"}
        )

    mode, answer = serve(path, body)
    assert mode == 0o600
    assert answer == {"ok": True, "what": "bindings", "items": [1, 2]}
    assert not path.exists()  # removed on close


def test_errors_are_answers(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"

    def body(p: Path) -> list[bytes]:
        return raw_exchange(
            p,
            [
                b"{not json\n",
                b"[1, 2]\n",
                b'{"command": "refuse"}\n',
                b'{"command": "crash"}\n',
                b'{"command": "show", "what": "counters"}\n',
            ],
        )

    answers = [json.loads(line) for line in serve(path, body)]
    assert [a["ok"] for a in answers] == [False, False, False, False, True]
    assert answers[0]["error"].startswith("bad request: not JSON")
    assert answers[1]["error"] == "bad request: not a JSON object"
    assert answers[2]["error"] == "no such thing"
    assert answers[3]["error"] == "internal error"
    assert answers[4]["what"] == "counters"


def test_absent_socket_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlUnavailable, match=r"no control socket .* is the appliance running"):
        ControlClient(tmp_path / "absent.sock", timeout=1).request({"command": "show"})


def test_stale_socket_refused_then_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: a crashed run's leftover
    with pytest.raises(ControlUnavailable, match="refused"):
        ControlClient(path, timeout=1).request({"command": "show"})
    answer = serve(path, lambda p: ControlClient(p).request({"command": "show", "what": "x"}))
    assert answer["ok"] is True


def test_live_socket_and_non_socket_are_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"

    async def main() -> None:
        async with ControlServer(path, handler):
            with pytest.raises(ControlError, match="another process"):
                await ControlServer(path, handler).start()

    asyncio.run(main())
    regular = tmp_path / "file"
    regular.write_text("keep me")

    async def refuse() -> None:
        with pytest.raises(ControlError, match="not a socket"):
            await ControlServer(regular, handler).start()

    asyncio.run(refuse())
    assert regular.read_text() == "keep me"
