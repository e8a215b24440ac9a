"""A real PostgreSQL server for the lab and the tests (``store = postgresql``).

Debian 12's ``postgresql`` package is version 15; its binaries are in
``/usr/lib/postgresql/15/bin`` (not on PATH), and ``initdb``/``postgres`` refuse to run as root,
so as root they run as the ``postgres`` user (``runuser -u postgres``). The cluster lives in a
fresh data directory of its own, removed on :meth:`PostgresServer.stop`; nothing of the
system's clusters is touched.

It listens on a unix socket in its own directory, and on TCP only when ``listen`` is given
(the lab: an address inside the lab's ``db`` namespace). Authentication is ``trust`` on the
socket (the directory is the access control) and ``scram-sha-256`` over TCP, for the ``netlmm``
role whose password the caller chooses.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from netlmm_lab import netns
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until

VERSION = 15
BIN = Path(f"/usr/lib/postgresql/{VERSION}/bin")
PORT = 5432
USER = "postgres"


def available() -> str | None:
    """None if a server can be started here, else why not."""
    if not (BIN / "postgres").exists():
        return f"{BIN}/postgres is missing (apt-get install postgresql; make setup does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return "no postgres user (the postgresql package makes it)"
    return None


class PostgresServer:
    """``PostgresServer(namespace=None, listen=None, root=None)``: :meth:`start`, then
    :meth:`socket_dsn` (or :meth:`tcp_dsn`), :meth:`stop` (always: it removes the data
    directory)."""

    def __init__(
        self, namespace: str | None = None, listen: str | None = None, root: Path | None = None
    ) -> None:
        self.namespace = namespace
        self.listen = listen
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="netlmm-pg-"))
        else:  # a lab's: removed with its work directory too (netlmm lab down)
            root.mkdir(parents=True)
        self.root = root
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen[Any] | None = None

    # --- commands as the right user -------------------------------------------------------

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", USER, "--", *command]
        return command

    def _owned(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout: float = 30.0) -> PostgresServer:
        why = available()
        if why is not None:
            raise LabError(f"cannot start PostgreSQL: {why}")
        self._owned(self.root)
        self.sockets.mkdir()
        self._owned(self.sockets)
        self._initdb(timeout)
        self._postgres(timeout)
        return self

    def restart(self, timeout: float = 30.0) -> PostgresServer:
        """Start the server again on its data directory (after :meth:`kill`: crash recovery),
        once the killed one's backends are gone (they hold its shared memory)."""
        deadline = time.monotonic() + timeout
        for _ in range(100):
            try:
                self._postgres(max(1.0, min(5.0, deadline - time.monotonic())), keep=True)
                return self
            except LabError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
        raise LabError("PostgreSQL did not start again")

    def _initdb(self, timeout: float) -> None:
        initdb = [str(BIN / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust"]
        initdb += ["--no-sync", "-E", "UTF8", "--locale=C"]
        done = subprocess.run(
            self._as_owner(initdb), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise LabError(f"initdb failed: {done.stderr.strip()[-500:]}")
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\n"
            "host all all ::/0 scram-sha-256\n"
        )
        self._owned(hba)

    def _postgres(self, timeout: float, *, keep: bool = False) -> None:
        command = [
            str(BIN / "postgres"),
            "-D", str(self.data),
            "-k", str(self.sockets),
            "-c", f"listen_addresses={self.listen or ''}",
            "-c", f"port={PORT}",
            "-c", "fsync=on",
            "-c", "synchronous_commit=on",
            "-c", "max_connections=50",
            "-c", "shared_buffers=32MB",
            "-c", "password_encryption=scram-sha-256",
        ]  # fmt: skip
        argv = self._as_owner(command)
        log = self.log.open("a")
        try:
            if self.namespace is None:
                self.proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            else:
                self.proc = subprocess.Popen(
                    netns.argv(self.namespace, argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        finally:
            log.close()
        socket = self.sockets / f".s.PGSQL.{PORT}"
        try:
            wait_until(
                lambda: socket.exists() and self._ready(),
                timeout=timeout,
                interval=0.1,
                what=f"PostgreSQL on {socket}",
            )
        except LabError:
            tail = self.log.read_text(errors="replace")[-800:]
            if keep and self.proc is not None:
                netns.end(self.proc, time.monotonic() + 5.0)
            else:
                self.stop()
            raise LabError(f"PostgreSQL did not start: {tail}") from None

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise LabError(f"postgres exited {self.proc.returncode}")
        probe = [str(BIN / "pg_isready"), "-h", str(self.sockets), "-p", str(PORT), "-q"]
        return subprocess.run(probe, timeout=5, check=False).returncode == 0

    def psql(self, sql: str, database: str = "postgres", timeout: float = 30.0) -> str:
        """Run ``sql`` with psql over the socket as the superuser; its output (unaligned)."""
        command = [
            str(BIN / "psql"), "-h", str(self.sockets), "-p", str(PORT), "-U", USER,
            "-d", database, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise LabError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str, owner: str = USER, password: str | None = None) -> None:
        """A database ``name`` owned by role ``owner`` (made, with ``password``, if not ours)."""
        if owner != USER:
            secret = "" if password is None else f" PASSWORD '{password}'"
            self.psql(f"CREATE ROLE {owner} LOGIN{secret}")
        self.psql(f"CREATE DATABASE {name} OWNER {owner}")

    def socket_dsn(self, database: str, user: str = USER) -> str:
        return f"postgresql://{user}@/{database}?host={self.sockets}&port={PORT}"

    def tcp_dsn(self, database: str, user: str, host: str) -> str:
        shown = f"[{host}]" if ":" in host else host
        return f"postgresql://{user}@{shown}:{PORT}/{database}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _postmaster(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash of the database primary), keeping its data directory;
        its backends notice and exit. :meth:`restart` starts it again."""
        pid = self._postmaster()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (immediate shutdown, then SIGKILL) and remove its directory."""
        if self.proc is not None:
            if self.proc.poll() is None:
                # SIGQUIT to the postmaster itself (runuser does not pass signals on): an
                # immediate shutdown, clients or not, no checkpoint: the directory goes anyway
                postmaster = self._postmaster()
                with contextlib.suppress(ProcessLookupError):
                    if postmaster is not None:
                        os.kill(postmaster, signal.SIGQUIT)
                    else:
                        self.proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10.0)
                netns.end(self.proc, time.monotonic() + 5.0)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
