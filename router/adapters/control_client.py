"""The client side of the control socket (:mod:`router.adapters.control` is the server): the
standard library only, no asyncio, so ``netlmm attach`` (an access point's association hook)
starts fast. Protocol: one JSON object per line each way (see the server's module).
"""

from __future__ import annotations

import errno
import json
import socket
from pathlib import Path
from typing import Any

#: Longest request or response line, in bytes.
MAX_LINE = 1 << 20

JsonDict = dict[str, Any]


class ControlError(Exception):
    """A request the handler refuses, or (client side) a channel that cannot be used.

    Raised by a handler, its message goes to the client as ``{"ok": false, "error": ...}``.
    """


class ControlUnavailable(ControlError):
    """Client side: no appliance is listening (socket file absent, refused, timed out)."""


class ControlClient:
    """Synchronous client for the CLI: ``ControlClient(path).request({...}) -> dict``.

    Raises :class:`ControlUnavailable` when no appliance listens at ``path`` (with the reason:
    no such file, refused, permission denied, timed out) and :class:`ControlError` when the
    answer is not one JSON object. A response with ``"ok": false`` is returned, not raised.
    """

    def __init__(self, path: Path | str, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def request(self, request: JsonDict) -> JsonDict:
        line = json.dumps(request).encode() + b"\n"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(str(self.path))
            except FileNotFoundError as exc:
                raise ControlUnavailable(
                    f"no control socket at {self.path}: is the appliance running?"
                ) from exc
            except ConnectionRefusedError as exc:
                raise ControlUnavailable(
                    f"control socket {self.path} refused the connection: "
                    "the appliance is not running (stale socket file)"
                ) from exc
            except PermissionError as exc:
                raise ControlUnavailable(
                    f"control socket {self.path}: permission denied (run as root)"
                ) from exc
            except TimeoutError as exc:
                raise ControlUnavailable(f"control socket {self.path}: timed out") from exc
            except OSError as exc:
                raise ControlUnavailable(
                    f"control socket {self.path}: {errno.errorcode.get(exc.errno or 0, exc)}"
                ) from exc
            try:
                sock.sendall(line)
                answer = self._read_line(sock)
            except TimeoutError as exc:
                raise ControlUnavailable(
                    f"control socket {self.path}: no answer within {self.timeout:g} s"
                ) from exc
            except OSError as exc:
                raise ControlUnavailable(f"control socket {self.path}: {exc}") from exc
        finally:
            sock.close()
        try:
            response = json.loads(answer)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ControlError(f"bad answer from {self.path}: not JSON") from exc
        if not isinstance(response, dict):
            raise ControlError(f"bad answer from {self.path}: not a JSON object")
        return response

    def _read_line(self, sock: socket.socket) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError(f"control socket {self.path} closed without an answer")
            end = chunk.find(b"\n")
            if end >= 0:
                chunks.append(chunk[:end])
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_LINE:
                raise ControlError(f"answer from {self.path} longer than {MAX_LINE} bytes")
