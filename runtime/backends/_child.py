"""A child actor's entry: ``python -m backends._child <request>``, a fork, or a subint.

Until the handshake, fd 2 is the boot pipe the parent reads (so a boot death
is reported with its output); afterwards the inherited stderr comes back.
"""

from __future__ import annotations

import base64
import os
import signal
import sys
import time
from collections.abc import Sized
from types import ModuleType

import msgspec

from .spawn._base import SpawnRequest


def _set_title(name: str) -> None:
    import setproctitle

    title = f"backends[{name}]"
    setproctitle.setproctitle(title)
    setproctitle.setthreadtitle(title)  # /proc/<pid>/comm, which survives as a zombie


def _after_fork_reset() -> None:
    # The wakeup fd number we inherited belongs to the parent's trio loop (and
    # was closed with the other inherited fds); trio sets its own.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    from . import _state

    _state.reset_after_fork()
    _disable_resource_tracker()
    _reset_stdio()


def _reset_stdio() -> None:
    """Stdio objects on fds 0/1/2 again, as a fresh interpreter has them.

    The inherited ``sys.stderr`` may be a capture object (pytest's ``--capture``)
    writing to an fd number the scrub closed; the next socket opened here
    reuses that number, and writes meant for stderr would land in the IPC
    channel. faulthandler's inherited file is such a stale fd too.
    """
    import faulthandler

    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
    if faulthandler.is_enabled() and sys.__stderr__ is not None:
        faulthandler.enable(file=sys.__stderr__, all_threads=True)
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        faulthandler.unregister(sig)


def _disable_resource_tracker() -> None:
    # The parent's tracker pipe was closed by the fd scrub; any shm call that
    # reached it would fail with EBADF. Our segments are untracked anyway.
    from multiprocessing import resource_tracker

    class _NoTracker(resource_tracker.ResourceTracker):
        def register(self, name: Sized, rtype: str) -> None:
            pass

        def unregister(self, name: Sized, rtype: str) -> None:
            pass

        def ensure_running(self) -> None:
            pass

    tracker = _NoTracker()
    resource_tracker._resource_tracker = tracker
    resource_tracker.register = tracker.register
    resource_tracker.unregister = tracker.unregister
    resource_tracker.ensure_running = tracker.ensure_running


def run_child(request: SpawnRequest, *, stderr_fd: int, forked: bool = False) -> int:
    """Boot a process actor and serve until cancelled; the process exit code."""
    import trio

    from . import _actor, _dumps

    if forked:
        _after_fork_reset()
    _set_title(request.name)
    _dumps.install(f"backends[{request.name}]")
    sys.path[:] = request.sys_path
    hygiene: ModuleType | None
    try:
        from . import hygiene
    except ImportError:
        hygiene = None
    if hygiene is not None:
        hygiene.apply_child(request.parent_pid)

    def restore_stderr() -> None:
        if request.stdio == "inherit" and stderr_fd >= 0:
            sys.stderr.flush()
            os.dup2(stderr_fd, 2)
        if stderr_fd >= 0:
            os.close(stderr_fd)

    try:
        trio.run(_actor.serve_parent, request, restore_stderr)
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request = msgspec.msgpack.decode(base64.b64decode(argv[0]), type=SpawnRequest)
    return run_child(request, stderr_fd=request.stderr_fd)


_SUBINT_THREAD_IDLE = 0.1  # seconds a trio worker thread idles before it retires
_SUBINT_THREAD_JOIN = 2.0


def run_subint_child(encoded: bytes) -> None:
    """Entry inside a sub-interpreter: no retitling, no fd games (the process is shared).

    An interpreter with a live thread can be neither destroyed nor finalized
    (the process would hang at exit), and trio's idle worker threads live on
    for 10 s after their last job. So they retire quickly here, and the
    interpreter waits (bounded) for its threads before returning.
    """
    import threading

    import trio
    import trio._core._thread_cache as thread_cache  # no public knob for this

    from . import _actor

    thread_cache.IDLE_TIMEOUT = _SUBINT_THREAD_IDLE  # type: ignore[assignment]  # an int there, any number works
    request = msgspec.msgpack.decode(encoded, type=SpawnRequest)
    sys.path[:] = request.sys_path
    try:
        trio.run(_actor.serve_parent, request, lambda: None)
    finally:
        # Not this thread, nor "MainThread": in a sub-interpreter that is the
        # process's main thread, which never ends while we wait.
        deadline = time.monotonic() + _SUBINT_THREAD_JOIN
        skip = {threading.get_ident(), threading.main_thread().ident}
        for thread in threading.enumerate():
            if thread.ident not in skip:
                thread.join(max(0.0, deadline - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
