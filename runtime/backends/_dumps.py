"""Hang dumps into files, when $BACKENDS_DUMP_DIR is set: thread stacks on SIGUSR1, the trio task tree on SIGUSR2.

pytest's capture swallows stderr, so a supervisor outside the process asks
for stacks with SIGUSR1 and reads them from files instead. SIGUSR1 is
faulthandler's (C-level: it answers even when Python cannot run); SIGUSR2
is a Python handler that writes which task waits on which await inside
which nursery, so it answers only while the main thread can run Python.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TextIO

import trio

from ._paths import sanitise

ENV_VAR = "BACKENDS_DUMP_DIR"

# faulthandler keeps only the fd; the file object must outlive the registration.
_file: TextIO | None = None
_file_pid: int | None = None
# Files inherited through a fork: their fd numbers were closed in the child
# and may be reused, so they must be neither closed nor finalized here.
_inherited: list[TextIO] = []


def install(title: str) -> Path | None:
    """Register SIGUSR1 to dump every thread's stack to ``<dir>/<title>-<pid>.txt``.

    Returns the file's path, or None when $BACKENDS_DUMP_DIR is unset. Call it
    again after a fork: the inherited registration writes to the parent's file.
    """
    global _file, _file_pid
    directory = os.environ.get(ENV_VAR)
    if not directory:
        return None
    path = Path(directory) / f"{sanitise(title, limit=80)}-{os.getpid()}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives for the process
    faulthandler.register(signal.SIGUSR1, file=new, all_threads=True, chain=False)
    _install_task_tree(path)
    old, _file = _file, new
    old_pid, _file_pid = _file_pid, os.getpid()
    if old is not None:
        if old_pid == os.getpid():
            old.close()
        else:
            _inherited.append(old)
    return path


TREE_HEADER = "--- trio task tree ---"


def task_tree() -> list[str]:
    """This thread's trio run as lines: each task, the frame it awaits in, its nurseries' children."""
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        return ["(not inside trio.run)"]
    if root is None:
        return ["(trio.run has no root task yet)"]
    out: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        frames = through_shims(list(task.iter_await_frames()))
        # The await as the code that wrote it sees it: the innermost frame outside trio's own.
        own = [f for f in frames if "/trio/" not in f[0].f_code.co_filename] or frames
        last = f" awaiting {own[-1][0].f_code.co_filename}:{own[-1][1]} in {own[-1][0].f_code.co_name}" if own else ""
        out.append("  " * depth + f"task {task.name!r}" + last)
        for frame, lineno in frames[-12:]:
            out.append("  " * depth + f"    at {frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}")
        for nursery in task.child_nurseries:
            out.append("  " * depth + "  nursery:")
            for child in sorted(nursery.child_tasks, key=lambda t: t.name):
                walk(child, depth + 2)

    walk(root, 0)
    return out


def through_shims(frames: list[tuple[FrameType, int]]) -> list[tuple[FrameType, int]]:
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


def _install_task_tree(path: Path) -> None:
    def dump(signum: int, frame: object) -> None:
        try:
            text = "\n".join([TREE_HEADER, *task_tree()]) + "\n"
        except Exception as exc:  # noqa: BLE001 - a dump must never break the actor it describes
            text = f"{TREE_HEADER}\n(could not walk the tree: {type(exc).__name__}: {exc})\n"
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)

    # Only the main thread of the main interpreter may set a handler; a
    # sub-interpreter actor has its stacks (SIGUSR1) and no tree of its own.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGUSR2, dump)
