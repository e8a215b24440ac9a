"""hostapd's control interface: the 802.1X authenticator's events, read by the DMPA.

One unix datagram socket per access link, connected to hostapd's control socket
(``ctrl_interface`` directory + interface name) and ``ATTACH``-ed, so hostapd sends its events
to it; the event loop reads it (``add_reader``): no process per event, no polling of hostapd
for stations. What the DMPA acts on (hostapd 2.10's texts):

- ``CTRL-EVENT-EAP-SUCCESS2 <mac>``: the RADIUS server accepted the station (EAP pass-through
  success); hostapd authorizes the port.
- ``CTRL-EVENT-EAP-FAILURE2 <mac>`` / ``CTRL-EVENT-EAP-FAILURE <mac>``: it was refused.
- ``AP-STA-DISCONNECTED <mac>``: the station logged off or was de-authenticated.

On a success the monitor asks hostapd ``STA <mac>`` on the same socket and hands on the
station's ``dot1xAuthSessionUserName`` (hostapd sets it from the Access-Accept's User-Name), so
the profile the RADIUS proxy kept is the one of *this* authenticator's Accept even when the
same MAC authenticates elsewhere at the same time (no answer within :data:`STA_TIMEOUT`: the
name is None, counted).

hostapd forgets its monitors when it restarts: a ``PING`` every :data:`PING_INTERVAL` seconds
that gets no ``PONG`` within :data:`PING_TIMEOUT` (or a send that fails) makes the monitor
connect and attach again, every :data:`RETRY_INTERVAL` seconds until it can. A hostapd that
is not running yet at start is waited for the same way (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from router.core.counters import Counters, Names
from router.wire.ethernet import MacAddress

log = logging.getLogger(__name__)

PING_INTERVAL = 5.0
PING_TIMEOUT = 2.0
RETRY_INTERVAL = 1.0
STA_TIMEOUT = 1.0
MAX_DATAGRAM = 4096
MAX_PENDING_STA = 256


class AuthEvent(Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    DISCONNECTED = "disconnected"


EVENTS = {
    "CTRL-EVENT-EAP-SUCCESS2": AuthEvent.SUCCESS,
    "CTRL-EVENT-EAP-FAILURE2": AuthEvent.FAILURE,
    "CTRL-EVENT-EAP-FAILURE": AuthEvent.FAILURE,
    "AP-STA-DISCONNECTED": AuthEvent.DISCONNECTED,
}


class HostapdCounter(Names):
    """What the hostapd monitors count (``authenticator`` group, all links together)."""

    ATTACHED = "attached"  # ATTACH answered OK (at start, and after each reconnect)
    UNREACHABLE = "unreachable"  # a connect or send failed: retried
    PING_LOST = "ping_lost"  # no PONG in time: reconnected
    SUCCESS = "eap_success"
    FAILURE = "eap_failure"
    DISCONNECTED = "disconnected"
    IGNORED = "ignored"  # another event, or a reply we did not wait for
    MALFORMED = "malformed"  # an event we act on without a MAC that parses
    STA_UNANSWERED = "sta_unanswered"  # no STA reply in time: the success goes on without a name


def parse_event(datagram: bytes) -> tuple[AuthEvent, MacAddress] | str | None:
    """``<2>CTRL-EVENT-EAP-SUCCESS2 02:4e:4c:00:00:01`` -> (event, MAC); None: not an event
    we act on; ``"malformed"``: one we act on whose MAC does not parse."""
    text = datagram.decode("utf-8", "replace").strip()
    if not text.startswith("<"):
        return None
    _, _, text = text.partition(">")
    words = text.split()
    if not words or words[0] not in EVENTS:
        return None
    try:
        mac = MacAddress.parse(words[1]) if len(words) > 1 else None
    except ValueError:
        mac = None
    if mac is None:
        return "malformed"
    return EVENTS[words[0]], mac


def sta_user_name(reply: bytes) -> tuple[MacAddress, str | None] | None:
    """hostapd's answer to ``STA <mac>``: the station (its first line) and its
    ``dot1xAuthSessionUserName`` (None if absent); None: not a STA answer."""
    lines = reply.decode("utf-8", "replace").splitlines()
    if not lines:
        return None
    try:
        mac = MacAddress.parse(lines[0])
    except ValueError:
        return None
    for line in lines[1:]:
        key, _, value = line.partition("=")
        if key == "dot1xAuthSessionUserName":
            return mac, value or None
    return mac, None


class HostapdMonitor:
    """Attached to one hostapd control socket; ``on_event(event, mac, user_name)`` for each
    event (the user name on a success only, see the module text)."""

    def __init__(
        self,
        path: Path,
        on_event: Callable[[AuthEvent, MacAddress, str | None], None],
        counters: Counters,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.path = path
        self.on_event = on_event
        self.counters = counters
        self.loop = loop
        self.attached = False
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ping_sent: float | None = None
        self._closed = False
        self._warned = False
        #: Stations whose success waits for hostapd's STA answer -> its timer.
        self._asked: dict[MacAddress, asyncio.TimerHandle] = {}

    def start(self) -> None:
        self._connect()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for timer in self._asked.values():
            timer.cancel()
        self._asked.clear()
        self._drop_socket()

    def _drop_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self.attached = False

    def _later(self, delay: float, call: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._closed:
            self._timer = self.loop.call_later(delay, call)

    def _connect(self) -> None:
        self._drop_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind("")  # an autobound abstract address: nothing to clean up on disk
            sock.connect(str(self.path))
            sock.setblocking(False)
            sock.send(b"ATTACH")
        except OSError as exc:
            sock.close()
            self.counters[HostapdCounter.UNREACHABLE] += 1
            if not self._warned:
                self._warned = True
                log.warning("hostapd_unreachable socket=%s error=%s retrying=true", self.path, exc)
            self._later(RETRY_INTERVAL, self._connect)
            return
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._readable)
        # No OK to the ATTACH within the timeout: connect again.
        self._ping_sent = self.loop.time()
        self._later(PING_TIMEOUT, self._check)

    def _check(self) -> None:
        if self._ping_sent is not None:  # the ATTACH or PING went unanswered
            self.counters[HostapdCounter.PING_LOST] += 1
            self._connect()
            return
        if self._sock is None:
            self._connect()
            return
        try:
            self._sock.send(b"PING")
        except OSError:
            self.counters[HostapdCounter.UNREACHABLE] += 1
            self._connect()
            return
        self._ping_sent = self.loop.time()
        self._later(PING_TIMEOUT, self._check)

    def _readable(self) -> None:
        sock = self._sock
        for _ in range(64):  # bounded per wake-up; the reader is called again if more wait
            if sock is None or sock is not self._sock:
                return
            try:
                data = sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                self.counters[HostapdCounter.UNREACHABLE] += 1
                self._later(RETRY_INTERVAL, self._connect)
                self._drop_socket()
                return
            self._datagram(data)

    def _datagram(self, data: bytes) -> None:
        if data.startswith(b"<"):
            parsed = parse_event(data)
            if parsed is None:
                self.counters[HostapdCounter.IGNORED] += 1
            elif isinstance(parsed, str):
                self.counters[HostapdCounter.MALFORMED] += 1
            else:
                event, mac = parsed
                self.counters[_COUNTED[event]] += 1
                if event is AuthEvent.SUCCESS:
                    self._ask(mac)
                else:
                    self.on_event(event, mac, None)
            return
        answer = sta_user_name(data)
        if answer is not None and answer[0] in self._asked:
            self._asked.pop(answer[0]).cancel()
            self.on_event(AuthEvent.SUCCESS, answer[0], answer[1])
            return
        reply = data.strip()
        if reply in (b"OK", b"PONG") and self._ping_sent is not None:
            if reply == b"OK" and not self.attached:
                self.attached = True
                self._warned = False
                self.counters[HostapdCounter.ATTACHED] += 1
                log.info("hostapd_attached socket=%s", self.path)
            self._ping_sent = None
            self._later(PING_INTERVAL, self._check)
            return
        self.counters[HostapdCounter.IGNORED] += 1

    def _ask(self, mac: MacAddress) -> None:
        """``STA <mac>`` for its user name; the success is reported when hostapd answers."""
        previous = self._asked.pop(mac, None)
        if previous is not None:
            previous.cancel()
        if self._sock is None or len(self._asked) >= MAX_PENDING_STA:
            self._unanswered(mac)
            return
        try:
            self._sock.send(f"STA {mac}".encode())
        except OSError:
            self._unanswered(mac)
            return
        self._asked[mac] = self.loop.call_later(STA_TIMEOUT, self._timed_out, mac)

    def _timed_out(self, mac: MacAddress) -> None:
        if self._asked.pop(mac, None) is not None:
            self._unanswered(mac)

    def _unanswered(self, mac: MacAddress) -> None:
        self.counters[HostapdCounter.STA_UNANSWERED] += 1
        self.on_event(AuthEvent.SUCCESS, mac, None)


_COUNTED = {
    AuthEvent.SUCCESS: HostapdCounter.SUCCESS,
    AuthEvent.FAILURE: HostapdCounter.FAILURE,
    AuthEvent.DISCONNECTED: HostapdCounter.DISCONNECTED,
}
