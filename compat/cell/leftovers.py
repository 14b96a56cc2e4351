"""What a test leaves behind in its process, for any target: threads, sub-interpreters, and
shared-memory segments (stdlib only, like all of compat.cell).

Each test's leftovers are the ones alive after it that were not before it; they are leaks if they
are still alive once the whole session (its fixtures, its plugins' own teardown) has ended, and
are then blamed on the test that made them. A pool that outlives one test by design (a thread
cache) is therefore no leak if its owner closes it at the end, and its idle workers are left out
by name. The same idea as tractor's ``track_resource_deltas()`` for its own suite.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol as P

SHM = Path("/dev/shm")
# Worker pools that keep idle threads on purpose and retire them themselves.
POOL_THREADS = ("Trio thread ", "asyncio_")
GRACE_S = 0.5  # a thread or interpreter on its way out gets this long to finish


@dataclass(frozen=True)
class Snapshot:
    threads: dict[int, str] = field(default_factory=dict)
    interpreters: frozenset[int] = frozenset()
    shm: frozenset[str] = frozenset()


def _describe(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    where = getattr(target, "__qualname__", "") if target is not None else ""
    return f"{thread.name!r}" + (f" running {where}" if where else "")


def _interpreters() -> frozenset[int]:
    try:
        import _interpreters
    except ImportError:
        return frozenset()
    found = set()
    for entry in _interpreters.list_all():
        ident = entry[0] if isinstance(entry, tuple) else entry
        if int(ident) != 0:
            found.add(int(ident))
    return frozenset(found)


def _shm() -> frozenset[str]:
    uid = os.geteuid()
    try:
        entries = list(os.scandir(SHM))
    except OSError:
        return frozenset()
    mine = set()
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid == uid:
                mine.add(entry.name)
        except OSError:
            continue
    return frozenset(mine)


def snapshot() -> Snapshot:
    threads = {
        t.ident: _describe(t)
        for t in threading.enumerate()
        if t.ident is not None and t is not threading.main_thread() and not t.name.startswith(POOL_THREADS)
    }
    return Snapshot(threads=threads, interpreters=_interpreters(), shm=_shm())


def new_since(before: Snapshot, now: Snapshot) -> list[tuple[P.LeakKind, str, str]]:
    """(kind, key, description) of what ``now`` has that ``before`` had not."""
    found: list[tuple[P.LeakKind, str, str]] = []
    found += [("thread", str(i), f"thread {d}") for i, d in now.threads.items() if i not in before.threads]
    found += [
        ("subinterpreter", str(i), f"sub-interpreter {i}") for i in sorted(now.interpreters - before.interpreters)
    ]
    found += [("shm", n, f"/dev/shm/{n}") for n in sorted(now.shm - before.shm)]
    return found


class Tracker:
    """Per test: what it left alive. At the session's end: which of those still are (the leaks)."""

    def __init__(self) -> None:
        self.before: Snapshot | None = None
        # (kind, key) -> (nodeid, description), for every leftover of every test so far.
        self.candidates: dict[tuple[P.LeakKind, str], tuple[str, str]] = {}

    def start(self) -> None:
        self.before = snapshot()

    def finish(self, nodeid: str) -> None:
        if self.before is None:
            return
        left = new_since(self.before, snapshot())
        if left:
            # On their way out (a thread being joined, an interpreter being destroyed): a moment.
            deadline = time.monotonic() + GRACE_S
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = new_since(self.before, snapshot())
        for kind, key, description in left:
            self.candidates.setdefault((kind, key), (nodeid, description))
        self.before = None

    def leaks(self) -> list[P.LeakEvent]:
        """The leftovers still alive now (call it once the session has torn everything down)."""
        if not self.candidates:
            return []
        now = new_since(Snapshot(), snapshot())
        alive = {(kind, key) for kind, key, _ in now}
        return [
            {"event": "leak", "nodeid": nodeid, "kind": kind, "what": what, "t": time.time()}
            for (kind, key), (nodeid, what) in self.candidates.items()
            if (kind, key) in alive
        ]
