"""``subint`` backend: a PEP 734 sub-interpreter per child, on its own OS thread.

Python 3.14+ only. The interpreter uses the ``'legacy'`` configuration (shared
GIL, shared obmalloc) because msgspec, our wire format, refuses to load in an
isolated one. A sub-interpreter cannot be killed: teardown asks it to stop,
waits a bounded time, then abandons its (daemon) thread with a warning and
counts it; it never waits forever.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import sys
import threading
import warnings

import msgspec
import trio

from ._base import SpawnRequest

NAME = "subint"
_abandoned: list[str] = []
_lingering: set[int] = set()  # interpreters we could not destroy
EXIT_STATUS: int | None = None  # set by whoever knows it (the pytest plugin)


def unavailable() -> str | None:
    try:
        import _interpreters  # noqa: F401
        import concurrent.interpreters  # noqa: F401
    except ImportError:
        return (
            "needs Python 3.14+ (PEP 734, concurrent.interpreters); "
            f"this is {platform.python_version()}"
        )
    return None


def abandoned() -> list[str]:
    """Names of sub-interpreter actors that did not stop and were abandoned."""
    return list(_abandoned)


def _linger(interp: int) -> None:
    if not _lingering:
        atexit.register(_exit_without_finalizing)
    _lingering.add(interp)


def _live_interpreters() -> set[int]:
    import _interpreters

    return {entry[0] if isinstance(entry, tuple) else int(entry) for entry in _interpreters.list_all()}


def _exit_without_finalizing() -> None:
    """Leave the process before finalization can wait forever on a live interpreter.

    CPython cannot finalize a sub-interpreter that still runs a thread; with
    one abandoned the process would hang at exit. Streams are flushed first;
    the exit status is EXIT_STATUS when someone set it, else 1 after an
    uncaught exception, else 0.
    """
    if not (_lingering & _live_interpreters()):
        return
    status = EXIT_STATUS if EXIT_STATUS is not None else (1 if getattr(sys, "last_exc", None) else 0)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


class _SubintHandle:
    pid = None
    kind = "interpreter"

    def __init__(self, name: str, code: str, token: trio.lowlevel.TrioToken) -> None:
        self.name = name
        self._code = code
        self._token = token
        self._exited = trio.Event()
        self._error: str | None = None
        self._finished = False
        self._abandoned = False
        self._thread = threading.Thread(target=self._drive, name=f"subint[{name}]", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _drive(self) -> None:
        import _interpreters

        self._interp: int | None = None
        try:
            interp = self._interp = _interpreters.create("legacy")
        except Exception as exc:  # noqa: BLE001 - reported as a boot failure
            self._error = f"cannot create a sub-interpreter: {exc!r}"
        else:
            try:
                excinfo = _interpreters.exec(interp, self._code)
                if excinfo is not None:
                    self._error = getattr(excinfo, "formatted", None) or str(excinfo)
            except BaseException as exc:  # noqa: BLE001
                self._error = repr(exc)
            finally:
                try:
                    _interpreters.destroy(interp)
                except Exception:  # noqa: BLE001 - still running a thread of its own
                    _linger(interp)
        finally:
            self._finished = True
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._exited.set)

    def poll(self) -> int | None:
        if self._finished:
            return 1 if self._error else 0
        return -1 if self._abandoned else None

    async def wait(self) -> int | None:
        if not self._abandoned:
            await self._exited.wait()
        return self.poll()

    def terminate(self) -> None:
        if self._finished or self._abandoned:
            return
        self._abandoned = True
        _abandoned.append(self.name)
        if getattr(self, "_interp", None) is not None:
            _linger(self._interp)
        warnings.warn(
            f"sub-interpreter actor {self.name!r} did not stop in time; its thread is "
            "abandoned (a sub-interpreter cannot be killed)",
            RuntimeWarning,
            stacklevel=2,
        )

    def kill(self) -> None:
        self.terminate()

    async def run_io(self) -> None:
        pass

    def boot_output(self) -> str:
        return self._error or ""

    def cleanup(self) -> None:
        pass


class SubintBackend:
    name = NAME

    def unavailable(self) -> str | None:
        return unavailable()

    async def spawn(self, request: SpawnRequest) -> _SubintHandle:
        encoded = msgspec.msgpack.encode(request)
        code = (
            "import sys\n"
            f"sys.path[:] = {request.sys_path!r}\n"
            "from backends._child import run_subint_child\n"
            f"run_subint_child({encoded!r})\n"
        )
        handle = _SubintHandle(request.name, code, trio.lowlevel.current_trio_token())
        handle.start()
        await trio.lowlevel.checkpoint()
        return handle


BACKEND = SubintBackend()
