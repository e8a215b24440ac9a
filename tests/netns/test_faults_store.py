"""A full or read-only state directory (issue 8, Faults): clear errors, service goes on, the
writes are retried, and what a restart loads is never part of a batch.

Each scenario runs in its own mount namespace (``unshare -m``, private propagation) on a small
tmpfs mounted there: the root file system and the host's mounts are never touched, and the
tmpfs disappears with the namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

# Runs inside the mount namespace, from the checkout: sys.argv[1] = the tmpfs, argv[2] = step.
CHILD = r"""
import asyncio, json, os, signal, sys
from collections import Counter
from pathlib import Path
from router.adapters.store import Store, StoreError, StoreWriteError
from router.app import runner as runner_mod
from router.app.runner import ActionRunner
from router.core.actions import Persist, SendMH

root, step = Path(sys.argv[1]), sys.argv[2]
db = root / "state" / "state.sqlite"
filler = root / "filler"
out = {}

def rows(batch, n, size):
    record = {"batch": batch, "pad": "x" * size}
    return [Persist("binding", f"{batch}-{i}", record) for i in range(n)]

def fill():
    # Take every free byte (ENOSPC ends it); the database cannot grow after this.
    with filler.open("ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass

if step == "write":
    store = Store(db)
    store.apply(rows("a", 20, 50))
    fill()
    try:
        store.apply(rows("b", 200, 2000))
        out["b"] = "written"
    except StoreWriteError as exc:
        out["b"] = str(exc)
    out["backlog"] = store.backlog
    # The node: a loop turn with a Persist and a reply; the reply leaves although the write fails.
    runner_mod.STORE_RETRY_FIRST = 0.05
    loop = asyncio.new_event_loop()
    sent, counters = [], Counter()
    runner = ActionRunner(loop, store, {SendMH: sent.append}, counters)
    runner._store_delay = 0.05
    runner.submit([*rows("c", 5, 10), SendMH("peer", "reply")])
    async def wait(predicate, seconds):
        for _ in range(int(seconds / 0.02)):
            if predicate():
                return True
            await asyncio.sleep(0.02)
        return False
    loop.run_until_complete(wait(lambda: counters["store.write_error"] >= 2, 5.0))
    out["sent_while_full"] = len(sent)
    out["errors_while_full"] = counters["store.write_error"]
    runner.submit(rows("d", 3, 10))  # joins the backlog while the disk is full
    filler.unlink()  # an operator frees space
    out["recovered"] = loop.run_until_complete(wait(lambda: counters["store.recovered"] == 1, 10.0))
    out["counters"] = dict(counters)
    out["backlog_after"] = store.backlog
    # Full again, then the process dies with a batch that never reached the disk.
    fill()
    try:
        store.apply(rows("e", 200, 2000))
    except StoreWriteError:
        out["e"] = "refused"
    print(json.dumps(out), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

elif step == "crash":
    # One transaction per batch: 50 new rows in, the previous batch's 50 out; until killed.
    store = Store(db)
    old = [Persist("binding", key, None) for key in store.load().get("binding", {})]
    n = 10_000 * int(sys.argv[3])  # this run's batch names
    while True:
        store.apply(old + rows(f"k{n}", 50, 300))
        old = [Persist("binding", f"k{n}-{i}", None) for i in range(50)]
        n += 1

elif step == "load":
    store = Store(db)
    batches = Counter(key.split("-")[0] for key in store.load().get("binding", {}))
    print(json.dumps({"batches": batches}), flush=True)

elif step == "readonly":
    try:
        Store(db)
        print(json.dumps({"error": None}))
    except StoreError as exc:
        print(json.dumps({"error": str(exc)}))
"""


def in_mount_namespace(tmp_path: Path, script: str, size: str = "2m", timeout: float = 60.0) -> str:
    """Run ``script`` (sh) in a new mount namespace with a small tmpfs on ``$FS``."""
    fs = tmp_path / "fs"
    fs.mkdir()
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    prologue = f"""
        set -e
        mount --make-rprivate /
        mount -t tmpfs -o size={size},mode=700 netlmm-test {fs}
        FS={fs}; OUT={tmp_path}; PY="{sys.executable} {child}"
        cd {Path(__file__).resolve().parents[2]}
    """
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", textwrap.dedent(prologue) + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1]))


def test_disk_full_keeps_replies_going_retries_and_reloads_whole_batches(
    root: None, tmp_path: Path
) -> None:
    out = in_mount_namespace(
        tmp_path,
        """
        $PY $FS write > $OUT/write.json || true   # it ends itself with SIGKILL
        cat $OUT/write.json
        rm -f $FS/filler
        $PY $FS load
        """,
    )
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    written, loaded = lines[0], lines[1]
    assert "SQLITE_FULL" in written["b"] and "kept in memory" in written["b"], written
    assert written["backlog"] == 200
    assert written["sent_while_full"] == 1  # the reply went out although its row did not
    assert written["errors_while_full"] >= 2  # the first write and at least one retry
    assert written["recovered"] is True and written["backlog_after"] == 0, written
    assert written["counters"]["store.retry"] >= 2
    assert written["e"] == "refused"
    # After the crash: a, b (the backlog written on recovery), c and d; nothing of e.
    assert loaded["batches"] == {"a": 20, "b": 200, "c": 5, "d": 3}


def test_sigkill_at_random_moments_never_leaves_part_of_a_batch(root: None, tmp_path: Path) -> None:
    out = in_mount_namespace(
        tmp_path,
        """
        run=0
        for delay in 0.31 0.47 0.73 1.1; do
            run=$((run + 1))
            $PY $FS crash $run & pid=$!
            sleep $delay
            kill -9 $pid; wait $pid || true
            $PY $FS load
        done
        """,
        size="16m",  # room for SQLite's WAL (checkpointed at 4 MB): no ENOSPC in this one
    )
    runs = [json.loads(line)["batches"] for line in out.splitlines() if line.startswith("{")]
    assert len(runs) == 4
    for run in runs:
        assert list(run.values()) == [50], run  # one whole batch: never two, never part of one


def test_a_read_only_state_directory_is_a_clear_error_at_start(root: None, tmp_path: Path) -> None:
    out = in_mount_namespace(
        tmp_path,
        """
        mkdir $FS/state
        mount --bind $FS/state $FS/state
        mount -o remount,bind,ro $FS/state
        $PY $FS readonly
        """,
    )
    error = last_json(out)["error"]
    assert error is not None and "state directory is not writable" in error, error
