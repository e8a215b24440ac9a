"""The Prometheus endpoint's HTTP server: ``GET /metrics`` on ``node.metrics`` (off by default).

It serves a registry (:func:`router.app.metrics.registry_for` builds the node's) on the node's
own loop, so a scrape reads the counters between two loop turns and never races the data path.
One request per connection, bounded in size and time, and at most ``MAX_CONNECTIONS``
connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

log = logging.getLogger("router.app.metrics")  # the logger name its lines have always had

MAX_REQUEST = 8192
#: The classic text format (what generate_latest writes for our names), which every Prometheus
#: version reads; prometheus-client's CONTENT_TYPE_LATEST says 1.0.0 since 0.22.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT = 5.0
#: Connections served at once; past it one is closed unread (each holds an fd until it ends or
#: times out, and the fds are the node's: its sockets and devices need them).
MAX_CONNECTIONS = 16


class MetricsServer:
    """``GET /metrics`` over HTTP/1.0-style one-shot connections, on the running loop."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host, self.port = host, port
        self._server: asyncio.AbstractServer | None = None
        self.scrapes = 0
        #: Connections being served now, and those closed unread past MAX_CONNECTIONS.
        self.connections = 0
        self.refused = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]  # the one bound, for a port 0
        log.info("metrics_listening address=%s port=%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= MAX_CONNECTIONS:
            self.refused += 1
            writer.close()
            return
        self.connections += 1
        try:
            status, body, ctype = await asyncio.wait_for(self._request(reader), REQUEST_TIMEOUT)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            self.connections -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _request(self, reader: asyncio.StreamReader) -> tuple[str, bytes, str]:
        line = await reader.readline()
        for _ in range(100):  # headers: read and ignored
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
        parts = line.decode("latin-1").split()
        if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
        path = parts[1].split("?", 1)[0]
        if path not in ("/metrics", "/"):
            return "404 Not Found", b"GET /metrics\n", "text/plain"
        self.scrapes += 1
        body = generate_latest(self.registry)
        return "200 OK", b"" if parts[0] == "HEAD" else body, CONTENT_TYPE
