"""A full or read-only state directory: clear errors, service goes on, the
writes are retried, and what a restart loads is never part of a batch.

Each scenario runs in its own mount namespace (``unshare -m``, private propagation) on a small
tmpfs mounted there: the root file system and the host's mounts are never touched, and the
tmpfs disappears with the namespace.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.netns.children import REPO, child_argv

pytestmark = pytest.mark.root


def in_mount_namespace(tmp_path: Path, script: str, size: str = "2m", timeout: float = 60.0) -> str:
    """Run ``script`` (sh) in a new mount namespace with a small tmpfs on ``$FS``; ``$PY`` runs
    the child (``tests/netns/children/store_faults.py``) from the checkout."""
    fs = tmp_path / "fs"
    fs.mkdir()
    prologue = f"""
        set -e
        mount --make-rprivate /
        mount -t tmpfs -o size={size},mode=700 netlmm-test {fs}
        FS={fs}; OUT={tmp_path}; PY="{" ".join(child_argv("store_faults"))}"
        cd {REPO}
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
            # the kill comes $delay after its first batch is on disk (bounded wait, 20 s)
            for i in $(seq 1000); do [ -e $FS/committed-$run ] && break; sleep 0.02; done
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
