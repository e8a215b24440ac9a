"""systemd's readiness and watchdog protocol (sd_notify(3)), without libsystemd.

A message is one datagram of ``KEY=VALUE`` lines to the unix socket ``$NOTIFY_SOCKET`` (a path,
or ``@name`` for the abstract namespace). Without ``$NOTIFY_SOCKET`` (not started by systemd
with ``Type=notify``) every call does nothing. The watchdog interval is ``$WATCHDOG_USEC``
(for our pid when ``$WATCHDOG_PID`` is set): :func:`watchdog_interval`.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self.watchdog_usec = 0
        pid = env.get("WATCHDOG_PID")
        if pid is None or pid == str(os.getpid()):
            try:
                self.watchdog_usec = int(env.get("WATCHDOG_USEC", "0"))
            except ValueError:
                self.watchdog_usec = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 messages (half the timeout), None when not asked for."""
        if self.address is None or self.watchdog_usec <= 0:
            return None
        return self.watchdog_usec / 2e6

    def notify(self, **fields: object) -> bool:
        """Send ``READY=1`` and the like (keys upper-cased); False if it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(message.encode(), self.address)
            except OSError:
                return False
        return True
