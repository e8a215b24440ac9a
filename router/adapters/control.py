"""The control channel between ``netlmm show ...`` and a running appliance: a unix socket.

Protocol: one JSON object per line each way. The client sends a request such as
``{"command": "show", "what": "bindings"}``; the server answers one line per request, in order,
and the client may send more requests on the same connection.

* Success: the handler's dict, with ``"ok": true`` added unless the handler set ``"ok"``.
* Failure: ``{"ok": false, "error": "<message>"}``: a line that is not a JSON object, a line
  longer than :data:`MAX_LINE`, a :class:`ControlError` raised by the handler (its message is
  sent), or any other exception in the handler (``"internal error"``, logged).

Access: the socket file is created mode 0600 (bound under a temporary name, chmod-ed, then
renamed into place, so it is never reachable with looser permissions), its directory is made
(0755) if missing, and each connecting peer's uid (``SO_PEERCRED``) must be root or our own
uid. A stale socket file (nobody listening) is replaced; a live one is an error (another
process serves it); a path that exists and is not a socket is never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from router.adapters.control_client import (
    MAX_LINE,
    ControlClient,
    ControlError,
    ControlUnavailable,
)

__all__ = [
    "MAX_LINE",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "ControlUnavailable",
    "prepare_path",
]

log = logging.getLogger(__name__)

#: A connection that sends nothing for this long is closed.
IDLE_TIMEOUT = 60.0

JsonDict = dict[str, Any]
Handler = Callable[[JsonDict], JsonDict | Awaitable[JsonDict]]

_UCRED = struct.Struct("3i")  # pid, uid, gid


def _error(message: str) -> JsonDict:
    return {"ok": False, "error": message}


def prepare_path(path: Path) -> None:
    """Make the parent directory; remove a stale socket file; refuse a live one
    (:class:`ControlError`). ``OSError``: the directory cannot be made."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: a crashed run's leftover
        log.info("control_socket_stale_replaced path=%s", path)
        return
    finally:
        probe.close()
    raise ControlError(f"{path}: another process is serving this control socket")


def _bind_private(path: Path) -> socket.socket:
    """A listening unix socket at ``path`` with mode 0600 from its first moment."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(temp))
        os.chmod(temp, 0o600)
        os.rename(temp, path)
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        temp.unlink(missing_ok=True)
        raise
    return sock


class ControlServer:
    """Serve ``handler`` on the unix socket ``path`` (asyncio).

    ``handler(request) -> dict`` (or an awaitable of one) runs on the loop; keep it quick.
    Use ``await server.start()`` then ``await server.close()`` (which removes the socket file),
    or ``async with ControlServer(path, handler):``.
    """

    def __init__(self, path: Path | str, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._allowed_uids = {0, os.geteuid()}

    async def start(self) -> None:
        prepare_path(self.path)
        sock = _bind_private(self.path)
        self._inode = self.path.stat().st_ino
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        log.info("control_socket_listening path=%s", self.path)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        # Remove the file only if it is still ours (a newer process may have replaced it).
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        if sock is None:
            return False
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        _pid, uid, _gid = _UCRED.unpack(raw)
        return uid in self._allowed_uids

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self._peer_allowed(writer):
                await self._reply(writer, _error("permission denied"))
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(writer, _error(f"request longer than {MAX_LINE} bytes"))
                    return
                except TimeoutError:
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                await self._reply(writer, await self._answer(line))
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> JsonDict:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(f"bad request: not JSON ({exc})")
        if not isinstance(request, dict):
            return _error("bad request: not a JSON object")
        try:
            result = self.handler(request)
            if inspect.isawaitable(result):
                result = await result
        except ControlError as exc:
            return _error(str(exc))
        except Exception:
            log.exception("control_handler_failed command=%s", request.get("command"))
            return _error("internal error")
        if not isinstance(result, dict):
            log.error("control_handler_not_a_dict type=%s", type(result).__name__)
            return _error("internal error")
        return {"ok": True, **result}

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, response: JsonDict) -> None:
        try:
            data = json.dumps(response, default=str).encode()
        except (TypeError, ValueError):
            data = json.dumps(_error("internal error: response is not JSON")).encode()
        writer.write(data + b"\n")
        await writer.drain()
