"""The state store on a full or read-only file system, run inside the mount namespace of
``tests/netns/test_faults_store.py`` (a small tmpfs there): ``python -m
tests.netns.children.store_faults FS STEP [RUN]``.

* ``write``: fill the disk, check that a write fails clearly and that the node's reply still
  leaves, free space and see the backlog written, fill it again and refuse a batch; prints one
  JSON line, then dies by SIGKILL (a crash with a batch that never reached the disk).
* ``crash``: one transaction per batch (50 new rows in, the previous 50 out) until killed;
  ``FS/committed-RUN`` says the first one is on disk.
* ``load``: how many rows of each batch a restart loads.
* ``readonly``: what opening a store in a read-only state directory says.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from netlmm_lab.poll import TimedOut, wait_until
from router.adapters.store import Store, StoreError, StoreWriteError
from router.app import runner as runner_mod
from router.app.runner import ActionRunner
from router.core.actions import Persist, SendMH
from router.core.counters import Counters
from router.wire.mh import Heartbeat

PEER = IPv6Address("2001:db8::1")


def rows(batch: str, n: int, size: int) -> list[Persist]:
    record: dict[str, object] = {"batch": batch, "pad": "x" * size}
    return [Persist("binding", f"{batch}-{i}", record) for i in range(n)]


def fill(filler: Path) -> None:
    """Take every free byte (ENOSPC ends it); the database cannot grow after this."""
    with filler.open("ab", buffering=0) as f:
        for _ in range(1 << 20):  # bounded: 4 GiB at most, far beyond the tmpfs
            try:
                f.write(b"\0" * 4096)
            except OSError:
                return


def settled(loop: asyncio.AbstractEventLoop, predicate: Callable[[], bool], seconds: float) -> bool:
    """Run ``loop`` in short turns until ``predicate`` holds; False (and why, on stderr) if it
    does not within ``seconds``."""

    def turn() -> bool:
        loop.run_until_complete(asyncio.sleep(0.02))
        return predicate()

    try:
        wait_until(turn, seconds, "the store's counters", interval=0.001)
    except TimedOut as exc:
        print(exc, file=sys.stderr)
        return False
    return True


def write(root: Path) -> None:
    db = root / "state" / "state.sqlite"
    filler = root / "filler"
    out: dict[str, Any] = {}
    store = Store(db)
    store.apply(rows("a", 20, 50))
    fill(filler)
    try:
        store.apply(rows("b", 200, 2000))
        out["b"] = "written"
    except StoreWriteError as exc:
        out["b"] = str(exc)
    out["backlog"] = store.backlog
    # The node: a loop turn with a Persist and a reply; the reply leaves although the write fails.
    runner_mod.STORE_RETRY_FIRST = 0.05
    loop = asyncio.new_event_loop()
    sent: list[object] = []
    counters = Counters()
    runner = ActionRunner(loop, store, {SendMH: sent.append}, counters)
    runner.submit([*rows("c", 5, 10), SendMH(PEER, Heartbeat(1, 0))])
    settled(loop, lambda: counters["store.write_error"] >= 2, 5.0)
    out["sent_while_full"] = len(sent)
    out["errors_while_full"] = counters["store.write_error"]
    runner.submit(rows("d", 3, 10))  # joins the backlog while the disk is full
    filler.unlink()  # an operator frees space
    out["recovered"] = settled(loop, lambda: counters["store.recovered"] == 1, 10.0)
    out["counters"] = dict(counters)
    out["backlog_after"] = store.backlog
    # Full again, then the process dies with a batch that never reached the disk.
    fill(filler)
    try:
        store.apply(rows("e", 200, 2000))
    except StoreWriteError:
        out["e"] = "refused"
    print(json.dumps(out), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def crash(root: Path, run: int) -> None:
    """One transaction per batch: 50 new rows in, the previous batch's 50 out; until killed."""
    store = Store(root / "state" / "state.sqlite")
    old = [Persist("binding", key, None) for key in store.load().get("binding", {})]
    n = 10_000 * run  # this run's batch names
    first = n
    while True:
        store.apply(old + rows(f"k{n}", 50, 300))
        if n == first:  # the test kills us a while after this appears
            (root / f"committed-{run}").touch()
        old = [Persist("binding", f"k{n}-{i}", None) for i in range(50)]
        n += 1


def load(root: Path) -> None:
    store = Store(root / "state" / "state.sqlite")
    batches = Counter(key.split("-")[0] for key in store.load().get("binding", {}))
    print(json.dumps({"batches": batches}), flush=True)


def readonly(root: Path) -> None:
    try:
        Store(root / "state" / "state.sqlite")
        print(json.dumps({"error": None}))
    except StoreError as exc:
        print(json.dumps({"error": str(exc)}))


def main(argv: list[str]) -> None:
    root, step = Path(argv[0]), argv[1]
    if step == "write":
        write(root)
    elif step == "crash":
        crash(root, int(argv[2]))
    elif step == "load":
        load(root)
    elif step == "readonly":
        readonly(root)
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
