"""``forkserver`` backend: fork from a main-interpreter thread that never ran trio.

A fork copies the warm image (trio and msgspec already imported), so a child
needs no interpreter start and no imports. Forking from the trio thread would
duplicate trio's run state; a dedicated thread that never entered trio leaves
the child's only thread trio-free. In the child that thread becomes the main
thread, so trio can install its signal handling there.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import threading
import traceback
import warnings
from collections.abc import Callable

import trio

from .._errors import BackendUnavailable
from . import subint
from ._base import OutputTail, PidfdHandle, SpawnRequest

NAME = "forkserver"
_FORK_TIMEOUT = 10.0
_FORK_SAFE_WAIT = 3.0  # for sub-interpreters still being destroyed


def unavailable() -> str | None:
    if not hasattr(os, "fork"):
        return "needs os.fork (POSIX)"
    if not hasattr(os, "pidfd_open"):
        return "needs os.pidfd_open (Linux 5.3+) for cancellable child waits"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        return f"pidfd_open is refused here: {exc.strerror}"
    return None


class _Forker:
    """A daemon thread that forks on request and has never run trio."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="backends-forker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self, timeout: float) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)


_forker: _Forker | None = None
_forker_pid: int | None = None


def _get_forker() -> _Forker:
    global _forker, _forker_pid
    if _forker is None or _forker_pid != os.getpid():
        _warm_imports()
        _forker, _forker_pid = _Forker(), os.getpid()
    return _forker


def shutdown(timeout: float = 5.0) -> None:
    """Stop the forker thread once its queued forks are done; the next spawn starts a new one.

    For the end of a test session: nothing of the runtime outlives it.
    """
    global _forker
    if _forker is not None and _forker_pid == os.getpid():
        _forker.stop(timeout)
    _forker = None


def _warm_imports() -> None:
    # What a child imports on its way up: imported once here, every fork gets it free.
    import importlib

    for name in ("setproctitle", "backends._child", "backends._actor", "backends._dumps"):
        importlib.import_module(name)
    for optional in ("backends.hygiene", "backends.syncbridge"):
        with contextlib.suppress(ImportError):
            importlib.import_module(optional)


def _child_after_fork(request: SpawnRequest, boot_w: int) -> None:
    """Runs in the forked child, on what was the forker thread. Never returns."""
    code = 1
    try:
        saved_stderr = os.dup(2)
        os.dup2(boot_w, 2)
        if request.stdio == "pipe":
            os.dup2(boot_w, 1)
        os.close(boot_w)
        _close_inherited_fds(keep={0, 1, 2, saved_stderr})
        from .._child import run_child

        code = run_child(request, stderr_fd=saved_stderr, forked=True)
    except BaseException:  # noqa: BLE001 - a fork child reports anything, then always _exits
        with contextlib.suppress(BaseException):
            os.write(2, traceback.format_exc().encode())
    finally:
        os._exit(code)


def _close_inherited_fds(keep: set[int]) -> None:
    # The parent's listeners, epoll, wakeup pipes and peer sockets must not
    # live on in the child: they would keep sockets open and confuse trio.
    try:
        fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, os.sysconf("SC_OPEN_MAX")))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _subinterpreters() -> int:
    """Sub-interpreters alive in this process besides the main one."""
    return len(subint.live_interpreters()) - 1


async def _ensure_fork_safe() -> None:
    """CPython (3.14.10) crashes a child forked while any sub-interpreter
    exists, even an idle one (SIGSEGV before it runs a line). The subint
    backend's warm pool is ours to let go of, and an interpreter whose actor
    has ended but which is still being destroyed is waited for, bounded;
    running sub-interpreter actors are not ours to end: forking is then
    refused rather than crashing."""
    if not _subinterpreters():
        return
    if actors := subint.running():
        raise BackendUnavailable(
            NAME,
            f"cannot fork while sub-interpreter actors run in this process ({', '.join(actors)}): "
            "CPython crashes a child forked beside a sub-interpreter; stop them first",
        )
    await trio.to_thread.run_sync(subint.POOL.drain)
    with trio.move_on_after(_FORK_SAFE_WAIT):
        # Polled: CPython signals no event when an interpreter is finally destroyed.
        while _subinterpreters():  # noqa: ASYNC110
            await trio.sleep(0.02)
    if live := _subinterpreters():
        raise BackendUnavailable(
            NAME,
            f"cannot fork while {live} sub-interpreter(s) live in this process "
            "(CPython crashes a child forked beside one); stop the subint actors first",
        )


class ForkserverBackend:
    name = NAME
    boot_width = None

    def unavailable(self) -> str | None:
        return unavailable()

    async def spawn(self, request: SpawnRequest) -> PidfdHandle:
        await _ensure_fork_safe()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[int | BaseException] = []
        boot_r, boot_w = os.pipe()

        def deliver(value: int | BaseException) -> None:
            result.append(value)
            done.set()

        def job() -> None:
            pid = -1
            try:
                with warnings.catch_warnings():
                    # 3.12+ warns about forking a threaded process; the child
                    # only ever runs on the forking thread, which is the point.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    # Frozen objects are never traversed by the child's GC, so
                    # their pages stay shared instead of being copied on write.
                    gc.freeze()
                    try:
                        pid = os.fork()
                    finally:
                        if pid != 0:
                            gc.unfreeze()
                if pid == 0:
                    _child_after_fork(request, boot_w)
                value: int | BaseException = pid
            except BaseException as exc:  # noqa: BLE001 - handed to the trio side
                value = exc
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(deliver, value)

        _get_forker().submit(job)
        try:
            # The fork happens regardless of cancellation; wait for its pid so
            # the child is supervised (and torn down) rather than orphaned.
            with trio.CancelScope(shield=True), trio.fail_after(_FORK_TIMEOUT):
                await done.wait()
        finally:
            os.close(boot_w)
        value = result[0]
        if isinstance(value, BaseException):
            os.close(boot_r)
            raise value
        return PidfdHandle(request.name, value, OutputTail(boot_r))


BACKEND = ForkserverBackend()
