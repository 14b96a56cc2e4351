"""Linux process hygiene through libc, switched on by the ``cffi`` dependency group.

Without it an actor only learns that its parent died when the parent
channel reaches EOF, which a child stuck in synchronous code never reads:
it survives as an orphan. With it:

- the root becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``), so
  descendants orphaned by a dying intermediate actor are re-parented to the
  root instead of to init, and ``reap_adopted`` collects them;
- every process actor asks the kernel for ``SIGKILL`` when its parent dies
  (``PR_SET_PDEATHSIG``), then checks that the parent is still the one it
  expects, closing the window in which the parent died before the request.

cffi is imported lazily (ABI mode, ``ffi.dlopen(None)``: no compiler, no
build step); without it, or off Linux, every call is a cheap no-op that
returns False (or nothing reaped).

Caveat for the caller: ``PR_SET_PDEATHSIG`` fires when the *thread* that
forked the child exits, not the process. A backend that forks from a
short-lived thread must not call ``apply_child`` in that child (the signal
would arrive as soon as the thread ends); fork from a long-lived thread.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Collection
from functools import cache
from pathlib import Path
from typing import Any

from . import _proc
from ._paths import TITLE_PREFIX, interpreter_id

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_CDEF = "int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);"


@cache
def unavailable() -> str | None:
    """None when the hygiene extension works here, else the reason it does not."""
    if not sys.platform.startswith("linux"):
        return f"process hygiene needs Linux prctl(2), not {sys.platform}"
    try:
        import cffi  # noqa: F401
    except ImportError:
        return "cffi is not installed (install the 'cffi' dependency group)"
    return None


@cache
def _libc() -> Any:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    return ffi, ffi.dlopen(None)


def _prctl(option: int, arg: int) -> None:
    ffi, libc = _libc()
    ffi.errno = 0
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ffi.errno
        raise OSError(err, f"prctl({option}, {arg}): {os.strerror(err)}")


def _in_main_interpreter() -> bool:
    """prctl acts on the whole process: a sub-interpreter actor must leave it alone."""
    return interpreter_id() == 0


def apply_root() -> bool:
    """Make this process a child subreaper. True when it now is."""
    if unavailable() is not None or not _in_main_interpreter():
        return False
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    return True


def apply_child(parent_pid: int | None = None) -> bool:
    """Ask for SIGKILL when the parent dies; True when the request is in place.

    ``parent_pid`` is the pid of the spawning process as the spawner knew
    it. If the parent already died (we were re-parented before the request
    took effect) this process kills itself now, as the kernel would have.
    Without ``parent_pid`` the current parent is taken, which cannot detect
    a death that happened before this call.
    """
    if unavailable() is not None or not _in_main_interpreter():
        return False
    expected = os.getppid() if parent_pid is None else parent_pid
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected:
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def _children_of(pid: int) -> set[int]:
    found: set[int] = set()
    tasks = Path(f"/proc/{pid}/task")
    try:
        for task in tasks.iterdir():
            text = (task / "children").read_text()
            found.update(int(p) for p in text.split())
        return found
    except FileNotFoundError:
        pass
    # Kernels without CONFIG_PROC_CHILDREN: scan every process's parent.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _stat(int(entry.name))[1] == pid:
            found.add(int(entry.name))
    return found


def _stat(pid: int) -> tuple[str, int]:
    """(state, ppid), or ("", 0) when it is gone."""
    return _proc.stat(pid) or ("", 0)


def _is_ours(pid: int) -> bool:
    """Recognised by title even as a zombie: comm survives, cmdline does not."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return comm.startswith(TITLE_PREFIX)


def reap_adopted(own: Collection[int] = ()) -> list[int]:
    """Reap zombie children of ours that nobody waits for; return their pids.

    Only zombies whose title marks them as actors and that are not in
    ``own`` (children the caller spawned itself and will wait on) are
    collected, one ``waitpid(pid, WNOHANG)`` each: never ``waitpid(-1)``,
    which would steal exit statuses from subprocess handles elsewhere.
    """
    if unavailable() is not None:
        return []
    me = os.getpid()
    reaped: list[int] = []
    for pid in sorted(_children_of(me) - set(own)):
        state, ppid = _stat(pid)
        if state != "Z" or ppid != me or not _is_ours(pid):
            continue
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done == pid:
            reaped.append(pid)
    return reaped


async def reap_adopted_pids(pids: Collection[int], own: Collection[int] = (), within: float = 1.0) -> None:
    """Reap these adopted orphans as they become reapable, for at most ``within`` s.

    One sweep is not enough: an orphan is re-parented to us a moment after it
    is killed, and a multi-threaded one shows as a zombie (its main thread)
    before its other threads are gone, while ``waitpid`` still answers 0.
    """
    import trio

    me = os.getpid()
    with trio.move_on_after(within):
        while True:
            reap_adopted(own=own)
            if not any(_stat(pid)[1] == me for pid in pids):
                return
            await trio.sleep(0.01)
