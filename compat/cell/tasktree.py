"""The trio task tree of this process, on SIGUSR2: which task waits on which await, in which nursery.

Stdlib only; trio is looked up, never imported, so a target without trio
is untouched. The handler is a Python one, so it runs only when the main
thread runs Python: a tree that never arrives is itself evidence (the
forensics step reports it). Written to ``<dumps>/pytest-tasks-<pid>.txt``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

HEADER = "--- trio task tree ---"
MAX_FRAMES = 12


def lines() -> Iterator[str]:
    trio = sys.modules.get("trio")
    if trio is None:
        yield "(trio is not imported in this process)"
        return
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        yield "(not inside trio.run in the main thread)"
        return
    if root is None:
        yield "(trio.run has no root task yet)"
        return
    yield from _task(root, 0)


def _task(task: Any, depth: int) -> Iterator[str]:
    pad = "  " * depth
    frames: list[tuple[FrameType, int]] = _through_shims(list(task.iter_await_frames()))
    # The await as the code that wrote it sees it: the innermost frame outside trio's own.
    own = [f for f in frames if "/trio/" not in f[0].f_code.co_filename] or frames
    where = f" awaiting {_frame(*own[-1])}" if own else ""
    yield f"{pad}task {task.name!r}{where}"
    for frame, lineno in frames[-MAX_FRAMES:]:
        yield f"{pad}    at {_frame(frame, lineno)}"
    for nursery in task.child_nurseries:
        yield f"{pad}  nursery:"
        for child in sorted(nursery.child_tasks, key=lambda t: t.name):
            yield from _task(child, depth + 2)


def _through_shims(frames: list[tuple[FrameType, int]]) -> list[tuple[FrameType, int]]:
    """Follow greenback's shim into the coroutine it drives (on another greenlet, out of trio's sight)."""
    while frames and frames[-1][0].f_code.co_name == "_greenback_shim":
        coro = frames[-1][0].f_locals.get("orig_coro")
        inner = []
        while coro is not None and (frame := getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)):
            inner.append((frame, frame.f_lineno))
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if not inner:
            break
        frames = frames + inner
    return frames


def _frame(frame: FrameType, lineno: int) -> str:
    return f"{frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}"


def install(path: Path) -> bool:
    """Write the tree to ``path`` on SIGUSR2, unless the process already handles SIGUSR2."""
    if not hasattr(signal, "SIGUSR2") or signal.getsignal(signal.SIGUSR2) not in (signal.SIG_DFL, None):
        return False

    def dump(signum: int, frame: object) -> None:
        try:
            text = "\n".join([HEADER, *lines()]) + "\n"
        except Exception as exc:  # noqa: BLE001 - a dump must never break the process it describes
            text = f"{HEADER}\n(could not walk the tree: {type(exc).__name__}: {exc})\n"
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)

    try:
        signal.signal(signal.SIGUSR2, dump)
    except ValueError:  # not the main thread of the main interpreter
        return False
    return True
