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
import signal
import sys
import threading
import time
import warnings
from typing import NoReturn

import msgspec
import trio

from .._paths import interpreter_id
from ._base import SpawnRequest

NAME = "subint"
_abandoned: list[str] = []
_lingering: set[int] = set()  # interpreters we could not destroy
_running: set[_SubintHandle] = set()  # actors whose driver thread has not ended
_exit_status: int | None = None  # set_exit_status(): by whoever knows it (the pytest plugin)


def set_exit_status(status: int) -> None:
    """The status this process leaves with if a lingering sub-interpreter makes it skip finalization
    (pytest's own, from the pytest plugin): without it, the one of ``sys.exit`` or of an exception."""
    global _exit_status
    _exit_status = int(status)


def unavailable() -> str | None:
    try:
        import _interpreters  # noqa: F401
        import concurrent.interpreters  # noqa: F401
    except ImportError:
        return f"needs Python 3.14+ (PEP 734, concurrent.interpreters); this is {platform.python_version()}"
    return None


def abandoned() -> list[str]:
    """Names of sub-interpreter actors that did not stop and were abandoned."""
    return list(_abandoned)


def running() -> list[str]:
    """Names of sub-interpreter actors whose thread still runs (abandoned ones too)."""
    return sorted(handle.name for handle in list(_running))


def in_main_interpreter() -> bool:
    """False inside a sub-interpreter (whose atexit runs when it is destroyed)."""
    return interpreter_id() == 0


def _linger(interp: int) -> None:
    # Only the main interpreter's exit is the process's exit: a sub-interpreter
    # actor's grandchildren are its parent's to account for.
    if not _lingering and in_main_interpreter():
        atexit.register(_exit_without_finalizing)
        _record_exit_codes()
    _lingering.add(interp)


def _record_exit_codes() -> None:
    """Remember what ``sys.exit`` was given: atexit hooks cannot see it otherwise."""
    original = sys.exit

    def exit(status: object = None) -> NoReturn:
        global _exit_code
        _exit_code = status
        original(status)  # type: ignore[arg-type]  # sys.exit takes any object

    sys.exit = exit


_NO_CODE = object()
_exit_code: object = _NO_CODE


def live_interpreters() -> set[int]:
    """Ids of every interpreter in this process, the main one (0) included."""
    try:
        import _interpreters
    except ImportError:
        return {0}
    return {entry[0] if isinstance(entry, tuple) else int(entry) for entry in _interpreters.list_all()}


def _exit_without_finalizing() -> None:
    """Leave the process before finalization can wait forever on a live interpreter.

    CPython cannot finalize a sub-interpreter that still runs a thread; with
    one abandoned the process would hang at exit. Streams are flushed first;
    the exit status is the one ``set_exit_status`` was given (the pytest plugin),
    else what ``sys.exit`` was given, else that of an uncaught exception
    (SIGINT for Ctrl-C), else 0.
    """
    if not (_lingering & live_interpreters()):
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(_status())


def _status() -> int:
    if _exit_status is not None:
        return _exit_status
    if _exit_code is not _NO_CODE:
        code = _exit_code
        if code is None or isinstance(code, int):
            return code or 0
        return 1  # sys.exit("message") printed it already
    last = getattr(sys, "last_exc", None)
    if isinstance(last, KeyboardInterrupt):
        # What the interpreter itself does after an uncaught Ctrl-C.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return 1 if last is not None else 0


class _WarmPool:
    """Sub-interpreters with the runtime already imported, made in the background.

    A cold legacy interpreter spends ~250 ms importing trio; taking a warm one
    leaves only the actor's own boot. Each is used once. Interpreters still
    warming at exit are waited for (bounded): finalization cannot wait on one
    that runs code on another thread.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._ready: list[tuple[int, tuple[str, ...]]] = []  # (interpreter, its sys.path)
        self._warming: list[threading.Thread] = []
        self._registered = False

    def take(self, path: list[str]) -> int | None:
        """A warm interpreter for this sys.path, waiting for one being warmed
        (it is ahead of a cold start). One warmed with another sys.path may
        have imported other modules: it is discarded. Only the main
        interpreter keeps a pool: nested actors would each warm one for nothing."""
        if not in_main_interpreter():
            return None
        self._wait_for_warmer(_WARM_WAIT)
        with self._lock:
            entry = self._ready.pop() if self._ready else None
        self.refill()
        if entry is None:
            return None
        interp, warmed_with = entry
        if warmed_with != tuple(path):
            _destroy_quietly(interp)
            return None
        return interp

    def wait_ready(self, timeout: float) -> bool:
        """Block until a warm interpreter is ready (for measurements)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.refill()
            with self._lock:
                if self._ready:
                    return True
            self._wait_for_warmer(left)
        return False

    def _wait_for_warmer(self, timeout: float) -> None:
        """With none ready, wait (bounded) for one being warmed."""
        with self._lock:
            if self._ready:
                return
            warmer = next((t for t in self._warming if t.is_alive()), None)
        if warmer is not None:
            warmer.join(timeout)

    def refill(self) -> None:
        with self._lock:
            self._warming = [t for t in self._warming if t.is_alive()]
            missing = self.size - len(self._ready) - len(self._warming)
            for _ in range(max(0, missing)):
                thread = threading.Thread(target=self._warm, args=(list(sys.path),), name="subint-warmer", daemon=True)
                self._warming.append(thread)
                thread.start()
            if missing > 0 and not self._registered:
                self._registered = True
                atexit.register(self.drain)

    def _warm(self, path: list[str]) -> None:
        import _interpreters

        try:
            interp = _interpreters.create("legacy")
            excinfo = _interpreters.exec(interp, _WARM_CODE.format(path=path))
        except Exception:  # noqa: BLE001 - a cold spawn will report the problem
            return
        if excinfo is not None:
            _destroy_quietly(interp)
            return
        with self._lock:
            self._ready.append((interp, tuple(path)))

    def drain(self) -> None:
        """Destroy every warm interpreter, waiting (bounded) for those being warmed."""

        deadline = time.monotonic() + 5.0
        for thread in list(self._warming):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            ready, self._ready = self._ready, []
        for interp, _ in ready:
            _destroy_quietly(interp)


def _destroy_quietly(interp: int) -> None:
    import _interpreters

    with contextlib.suppress(Exception):
        _interpreters.destroy(interp)


_WARM_WAIT = 5.0
_WARM_CODE = """\
import sys
sys.path[:] = {path!r}
import trio, msgspec, backends._child, backends._actor
"""
POOL = _WarmPool(size=int(os.environ.get("BACKENDS_SUBINT_POOL", "1")))


class _SubintHandle:
    pid = None
    kind = "interpreter"

    def __init__(self, name: str, code: str, token: trio.lowlevel.TrioToken, path: list[str]) -> None:
        self.name = name
        self._path = path
        self._code = code
        self._token = token
        self._exited = trio.Event()
        self._error: str | None = None
        self._finished = False
        self._abandoned = False
        self._thread = threading.Thread(target=self._drive, name=f"subint[{name}]", daemon=True)

    def start(self) -> None:
        _running.add(self)
        self._thread.start()

    def _drive(self) -> None:
        import _interpreters

        self._interp: int | None = None
        try:
            interp = POOL.take(self._path)
            if interp is None:
                interp = _interpreters.create("legacy")
            self._interp = interp
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
            _running.discard(self)
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
        if (interp := getattr(self, "_interp", None)) is not None:
            _linger(interp)
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

    def pids(self) -> list[int]:
        return []  # it lives in our own process

    def forward_output(self) -> None:
        pass  # it writes to our own streams already

    async def boot_output(self) -> str:
        return self._error or ""

    def cleanup(self) -> None:
        pass


class SubintBackend:
    name = NAME
    # Legacy interpreters share one GIL: boots side by side only slow each
    # other (25 at once took 7 s, none meeting its 3 s stop bound), while a
    # queued boot that nobody waits for any more is simply never started.
    boot_width = 1

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
        handle = _SubintHandle(request.name, code, trio.lowlevel.current_trio_token(), request.sys_path)
        handle.start()
        await trio.lowlevel.checkpoint()
        return handle


BACKEND = SubintBackend()
