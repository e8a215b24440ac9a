"""Network namespaces: make them, run in them, enter them, remove them.

The one namespace helper of the lab, its campaigns, the tests and the benchmarks:

* :func:`create` / :func:`delete` (and :func:`namespace`, a fresh run-unique namespace that is
  always deleted); :func:`delete` first kills what still runs inside and removes the
  namespace's ``/etc/netns/<name>`` directory (:func:`etc`), so nothing of it stays.
* :func:`run` / :func:`popen`: a command inside a namespace (``ip netns exec``, which execs it:
  the PID the caller holds is the command's own, and :func:`end` ends it by that PID).
* :func:`enter`: this thread inside a namespace for the sockets and fds made in the body (a
  socket keeps the namespace it was made in); setns(2), never a remount of ``/sys``.
* :func:`ip`: the ``ip`` command (``-n NAME`` selects a namespace; never the root one's links).

Names: :func:`new_prefix` hands out ``nl<pid>`` and then ``nl<pid>.<n>``; a namespace is
``<prefix>-<short>``, so :meth:`netlmm_lab.topology.Lab.sweep` recognises what a crashed run
left by the owner PID in its name.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from netlmm_lab.errors import LabError

NETNS_RUN = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
CLONE_NEWNET = 0x40000000
#: ``<prefix>-<short>``: what :func:`namespace` and the labs name their namespaces.
NAME = re.compile(r"^(nl(\d+)(?:\.\d+)?)-[a-z0-9]+$")
SHORT = re.compile(r"^[a-z0-9]{1,12}$")

_libc = ctypes.CDLL(None, use_errno=True)
_prefixes = itertools.count()
_prefix_lock = threading.Lock()


def new_prefix() -> str:
    """``nl<pid>`` the first time in this process, then ``nl<pid>.<n>``."""
    with _prefix_lock:
        n = next(_prefixes)
    return f"nl{os.getpid()}" if n == 0 else f"nl{os.getpid()}.{n}"


def ip(*args: str, timeout: float = 15.0) -> str:
    """Run ``ip args`` (``-n NAME`` for a namespace); its stdout, or :class:`LabError` with
    its stderr."""
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def exists(name: str) -> bool:
    return (NETNS_RUN / name).exists()


def create(name: str) -> str:
    """Add namespace ``name`` with its loopback up; returns the name."""
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
    except BaseException:
        delete(name)
        raise
    return name


def delete(name: str, deadline: float | None = None) -> None:
    """Kill whatever still runs in ``name``, delete it and its ``/etc/netns/<name>``
    directory. A namespace that is already gone is not an error."""
    kill_all_in(name, deadline if deadline is not None else time.monotonic() + 10.0)
    result = subprocess.run(
        ["ip", "netns", "delete", name], capture_output=True, text=True, timeout=15, check=False
    )
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
    if result.returncode != 0 and exists(name):
        raise LabError(f"ip netns delete {name}: {result.stderr.strip()}")


def etc(name: str) -> Path:
    """``/etc/netns/<name>/``, made if missing: files there (``resolv.conf``) replace the
    host's for commands run with :func:`run`/:func:`popen`; :func:`delete` removes it."""
    path = NETNS_ETC / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def namespace(tag: str) -> Iterator[str]:
    """A fresh namespace ``<prefix>-<tag>`` with ``lo`` up, deleted on exit, on error too."""
    if not SHORT.match(tag):
        raise ValueError(f"namespace tag {tag!r}: 1-12 lower-case letters and digits")
    name = create(f"{new_prefix()}-{tag}")
    try:
        yield name
    finally:
        delete(name)


def argv(name: str, command: Sequence[str]) -> list[str]:
    """``ip netns exec name command...`` (it execs the command: same PID)."""
    return ["ip", "netns", "exec", name, *command]


def popen(
    name: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    text: bool = True,
    new_session: bool = True,
) -> subprocess.Popen[Any]:
    """Start ``command`` in namespace ``name``; ``env`` adds to this process's environment.
    The caller ends it (:func:`end`): by PID, never by name. ``new_session``: a Ctrl-C on the
    terminal reaches only this process, which then ends its children."""
    return subprocess.Popen(
        argv(name, command),
        env=None if env is None else {**os.environ, **env},
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=text,
        start_new_session=new_session,
    )


def run(
    name: str,
    command: Sequence[str],
    *,
    timeout: float = 30.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in namespace ``name`` to completion (ended at ``timeout``); with
    ``check`` a non-zero exit is a :class:`LabError` carrying its stderr."""
    proc = popen(
        name,
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
    )
    return finish(
        proc,
        command,
        name,
        timeout=timeout,
        check=check,
        input=input,
        stop=lambda p: end(p, time.monotonic() + 1.0),
    )


def finish(
    proc: subprocess.Popen[Any],
    command: Sequence[str],
    where: str,
    *,
    timeout: float,
    check: bool,
    input: str | None,
    stop: Callable[[subprocess.Popen[Any]], object],
) -> subprocess.CompletedProcess[str]:
    """Feed ``input`` to ``proc`` (``command``, started in namespace ``where``) and wait for it
    to end; at ``timeout`` it is stopped (``stop``) and that is a :class:`LabError`, as is a
    non-zero exit with ``check`` (carrying its stderr)."""
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stop(proc)
        raise LabError(f"in {where}: {' '.join(command)} timed out after {timeout}s") from exc
    finally:
        if proc.poll() is None:
            stop(proc)
    if check and proc.returncode != 0:
        raise LabError(f"in {where}: {' '.join(command)}: exit {proc.returncode}: {err.strip()}")
    return subprocess.CompletedProcess(list(command), proc.returncode, out, err)


@contextlib.contextmanager
def enter(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace ``name`` (fds made there stay there)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_RUN / name, os.O_RDONLY)
    except BaseException:
        os.close(home)
        raise
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:  # pragma: no cover - cannot go home
                os._exit(70)
    finally:
        os.close(target)
        os.close(home)


# --- processes ----------------------------------------------------------------------------


def pids(name: str) -> list[int]:
    """The PIDs of the processes in namespace ``name``."""
    result = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10, check=False
    )
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def kill_all_in(name: str, deadline: float) -> None:
    """SIGKILL every process left in namespace ``name`` (all were started for it) and wait
    until they are gone, at most until ``deadline``; never this process."""
    for _ in range(50):
        found = [pid for pid in pids(name) if pid != os.getpid()]
        if not found or time.monotonic() > deadline:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(found, min(deadline, time.monotonic() + 1.0))


def running(pid: int) -> bool:
    """Alive and not a zombie (orphans wait for PID 1 to reap them, which may be slow)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie too: it still owns its name)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_gone(found: Sequence[int], deadline: float) -> None:
    """Wait until none of ``found`` runs, at most until ``deadline``."""
    for _ in range(10_000):
        if not any(running(pid) for pid in found) or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def end(proc: subprocess.Popen[Any], deadline: float) -> int | None:
    """End ``proc`` by its PID: SIGTERM, wait until ``deadline``, then SIGKILL; always reaps
    it and closes its pipes. Its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.05, deadline - time.monotonic()))
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
    return proc.returncode
