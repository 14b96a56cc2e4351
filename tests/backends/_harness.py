"""Helpers shared by the suites: bounded trio tests, liveness checks, subprocess roots."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import psutil
import trio

REPO = Path(__file__).resolve().parents[2]
POLL = 0.02


def trio_test(timeout: float):
    """Run an async test under ``trio.run`` inside ``trio.fail_after(timeout)``."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            async def bounded():
                with trio.fail_after(timeout):
                    await fn(*args, **kwargs)

            trio.run(bounded)

        return wrapper

    return decorate


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: it runs no code and holds no socket)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def is_actor(pid: int) -> bool:
    """Whether ``pid`` is one of our actors, judged by its title (comm survives as a zombie)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("backends[")
    except OSError:
        return False


async def wait_gone(pids: Iterable[int], within: float) -> list[int]:
    """Wait up to ``within`` seconds for every pid to stop running; the survivors."""
    pending = [p for p in pids if p != os.getpid()]
    with trio.move_on_after(within):
        while pending := [p for p in pending if alive(p)]:
            await trio.sleep(POLL)
    return [p for p in pending if alive(p)]


def kill_actors(pids: Iterable[int]) -> None:
    """SIGKILL survivors a scenario left behind, only if they still carry our title."""
    for pid in pids:
        if pid != os.getpid() and alive(pid) and is_actor(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def socket_files_of(pid: int) -> list[Path]:
    """Socket files named for ``pid`` in any run directory of ours."""
    from backends._paths import runtime_base, socket_globs

    base = runtime_base()
    if not base.is_dir():
        return []
    return sorted(p for pattern in socket_globs(pid) for p in base.glob(f"run-*/{pattern}"))


class RootProcess:
    """A root actor (``tests.backends._roots``) in its own session, read line by line."""

    def __init__(self, proc: trio.Process, stderr_path: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.lines: list[str] = []
        self._buf = b""
        self._stderr_path = stderr_path

    async def expect(self, prefix: str) -> str:
        """The next stdout line starting with ``prefix`` (bound it with a deadline)."""
        assert self.proc.stdout is not None
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if line.startswith(prefix):
                    return line
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(
                    f"root exited (code {self.proc.poll()}) before printing {prefix!r}; "
                    f"stdout {self.lines!r}; stderr tail:\n{self.stderr_tail()}"
                )
            self._buf += chunk

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


@contextlib.asynccontextmanager
async def open_root(beacon: str, kinds: list[str], backend: str, workdir: Path) -> AsyncIterator[RootProcess]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["BACKENDS_SPAWN_BACKEND"] = backend
    stderr_path = workdir / "root-stderr.txt"
    with open(stderr_path, "wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.backends._roots", beacon, *kinds],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
    root = RootProcess(proc, stderr_path)
    try:
        yield root
    finally:
        with trio.CancelScope(shield=True):
            if proc.poll() is None:
                proc.kill()
            with trio.move_on_after(5):
                await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()
        _remove_run_dirs_of(proc.pid)


def _remove_run_dirs_of(root_pid: int) -> None:
    """A root killed by SIGKILL cannot remove its run directory; the test that killed it does."""
    import shutil

    from backends._paths import runtime_base

    if alive(root_pid):
        return
    for run_dir in runtime_base().glob(f"run-{root_pid}-*"):
        shutil.rmtree(run_dir, ignore_errors=True)


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc``, depth first."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def actor_children() -> list[int]:
    """Direct child processes of this process that carry an actor title."""
    return [p.pid for p in psutil.Process().children() if alive(p.pid) and is_actor(p.pid)]
