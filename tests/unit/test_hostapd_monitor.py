"""The hostapd monitor against a fake hostapd control socket (a unix datagram socket in a
temporary directory, answering as hostapd 2.10 does): ATTACH, events, the STA question on a
success (answered, and not), and a restarted hostapd attached again."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from router.adapters import hostapd
from router.adapters.hostapd import AuthEvent, HostapdMonitor
from router.core.counters import Counters
from router.wire.ethernet import MacAddress

MAC = MacAddress.parse("02:4e:4c:00:00:01")
OTHER = MacAddress.parse("02:4e:4c:00:00:02")


class FakeHostapd:
    """Answers ATTACH/PING like hostapd; STA for ``MAC`` only; sends events to its monitor."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.monitor: Any = None
        self.seen: list[bytes] = []

    def serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except BlockingIOError:
                return
            self.seen.append(data)
            if data == b"ATTACH":
                self.monitor = addr
                self.sock.sendto(b"OK\n", addr)
            elif data == b"PING":
                self.sock.sendto(b"PONG\n", addr)
            elif data == f"STA {MAC}".encode():
                reply = f"{MAC}\nflags=[AUTH]\ndot1xAuthSessionUserName=alice@home.example\n"
                self.sock.sendto(reply.encode(), addr)

    def event(self, text: str) -> None:
        self.sock.sendto(f"<3>{text}".encode(), self.monitor)

    def close(self) -> None:
        self.sock.close()


async def _until(check: Any, fake: list[FakeHostapd], seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.01)):
        for f in fake:
            f.serve()
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_events_the_sta_question_and_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hostapd, "PING_INTERVAL", 0.1)
    monkeypatch.setattr(hostapd, "PING_TIMEOUT", 0.1)
    monkeypatch.setattr(hostapd, "RETRY_INTERVAL", 0.05)
    monkeypatch.setattr(hostapd, "STA_TIMEOUT", 0.1)
    path = tmp_path / "acc0"
    events: list[tuple[AuthEvent, MacAddress, str | None]] = []
    counters = Counters()

    async def scenario() -> None:
        fake = FakeHostapd(path)
        monitor = HostapdMonitor(
            path, lambda *e: events.append(e), counters, asyncio.get_running_loop()
        )
        monitor.start()
        await _until(lambda: monitor.attached, [fake])
        fake.event(f"CTRL-EVENT-EAP-SUCCESS2 {MAC}")
        fake.event(f"AP-STA-CONNECTED {MAC}")
        await _until(lambda: len(events) == 1, [fake])
        assert events[0] == (AuthEvent.SUCCESS, MAC, "alice@home.example")
        fake.event(f"CTRL-EVENT-EAP-SUCCESS2 {OTHER}")  # its STA goes unanswered
        fake.event(f"CTRL-EVENT-EAP-FAILURE2 {MAC}")
        await _until(lambda: len(events) == 3, [fake])
        assert events[1:] == [(AuthEvent.FAILURE, MAC, None), (AuthEvent.SUCCESS, OTHER, None)]
        # hostapd restarts: the old socket goes, a new one comes at the same path.
        fake.close()
        path.unlink()
        await asyncio.sleep(0.3)
        again = FakeHostapd(path)
        await _until(lambda: counters["attached"] == 2, [again])
        again.event(f"AP-STA-DISCONNECTED {MAC}")
        await _until(lambda: len(events) == 4, [again])
        assert events[3] == (AuthEvent.DISCONNECTED, MAC, None)
        monitor.close()
        again.close()

    asyncio.run(scenario())
    assert counters["eap_success"] == 2 and counters["sta_unanswered"] == 1
    assert counters["eap_failure"] == 1 and counters["disconnected"] == 1
    assert counters["ignored"] >= 1  # AP-STA-CONNECTED
    assert counters["ping_lost"] + counters["unreachable"] >= 1  # the restart was noticed
