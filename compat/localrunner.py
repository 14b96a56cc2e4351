"""The ``local`` runner: host interpreters in uv-made venvs, same outputs as docker.

Each cell runs in its own session and process group and, where the host
allows it, its own PID namespace (``unshare --pid --fork --mount-proc``), so
the kill at the time bound takes every descendant with it. A cell whose
Python is missing on the host is written as ``unavailable``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .config import Cell, Matrix
from .errors import CompatError
from .results import CellMeta
from .runner import (
    ROOT,
    CellRun,
    entry_spec,
    finish_meta,
    prepare_out,
    stage_plugin,
    target_dir,
    unavailable_meta,
    wait_for_dumps,
)

VENV_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spawn-compat" / "venvs"
POLL_S = 0.1


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise CompatError("the local runner needs uv on PATH (https://docs.astral.sh/uv/)")
    return uv


def _uv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("UV_PYTHON", "VIRTUAL_ENV")}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def find_python(version: str) -> str | None:
    proc = subprocess.run(
        [_uv(), "python", "find", version], capture_output=True, text=True, env=_uv_env()
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def venv_for(python_exe: str, python: str, group: str, project: Path = ROOT) -> Path:
    """A venv with the locked test (+group) dependencies, reused while the lock is unchanged."""
    digest = hashlib.sha256()
    for part in ((project / "uv.lock").read_bytes(), (project / "pyproject.toml").read_bytes(), python_exe.encode(), group.encode()):
        digest.update(part)
    venv = VENV_ROOT / f"py{python}-{group}-{digest.hexdigest()[:12]}"
    if (venv / ".complete").exists():
        return venv
    groups = ["--group", "test"] + (["--group", group] if group != "base" else [])
    env = {**_uv_env(), "UV_PROJECT_ENVIRONMENT": str(venv)}
    cmd = [_uv(), "sync", "--frozen", "--no-install-project", "--no-default-groups", *groups, "--python", python_exe]
    proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CompatError(f"uv sync for py{python}-{group} failed: {tail[0]}")
    (venv / ".complete").touch()
    return venv


def pid_namespace_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        probe = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def session_members(sid: int) -> list[tuple[int, str]]:
    """(pid, cmdline) of live host processes in session ``sid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append((int(entry.name), cmdline))
    return members


class LocalRunner:
    kind = "local"

    def __init__(self, matrix: Matrix, run_id: str, pytest_args: Sequence[str]) -> None:
        self.matrix = matrix
        self.run_id = run_id
        self.pytest_args = tuple(pytest_args)
        self.stage = stage_plugin()
        self.namespace = pid_namespace_works()
        self.venvs: dict[tuple[str, str], Path | str] = {}  # a str is why there is none
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def prepare(self, cells: Sequence[Cell]) -> None:
        for python, group in sorted({(c.python, c.group) for c in cells}):
            exe = find_python(python)
            if exe is None:
                self.venvs[(python, group)] = f"Python {python} is not installed on this host (uv python find {python})"
                continue
            self.venvs[(python, group)] = venv_for(exe, python, group)

    def abort(self) -> None:
        with self._lock:
            for proc in self._procs:
                _kill_group(proc)

    def close(self) -> None:
        self.abort()
        shutil.rmtree(self.stage, ignore_errors=True)

    def command(self, venv: Path, cell: Cell, out: Path) -> list[str]:
        target = str(target_dir(self.matrix))
        spec = entry_spec(self.matrix, cell, out=str(out.resolve()), cwd=target, extra=self.pytest_args)
        cmd = [str(venv / "bin" / "python"), "-m", "compat.cellentry", "run", spec]
        if self.namespace:
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", *cmd]
        return cmd

    def run_cell(self, cell: Cell, out: Path, stop: threading.Event) -> CellMeta:
        venv = self.venvs.get((cell.python, cell.group))
        if not isinstance(venv, Path):
            return unavailable_meta(cell, self.run_id, "local", out, venv or "not prepared")
        run = CellRun(cell=cell, run_id=self.run_id, runner="local", out=prepare_out(out))
        env = {
            **os.environ,
            "PYTHONPATH": f"{self.stage}:{target_dir(self.matrix)}",
            "COMPAT_SCOPE": "all" if self.namespace else "session",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.pop("VIRTUAL_ENV", None)
        with tempfile.TemporaryFile() as stdout:
            try:
                proc = subprocess.Popen(
                    self.command(venv, cell, out), stdout=stdout, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=env, cwd=target_dir(self.matrix), start_new_session=True,
                )  # fmt: skip
                with self._lock:
                    self._procs.add(proc)
                try:
                    self._supervise(proc, run, stop)
                finally:
                    _kill_group(proc)
                    with self._lock:
                        self._procs.discard(proc)
            except BaseException:
                run.interrupted = True
                stdout.seek(0)
                run.stdout = stdout.read().decode(errors="replace")
                finish_meta(run, self.matrix)
                raise
            stdout.seek(0)
            run.stdout = stdout.read().decode(errors="replace")
        return finish_meta(run, self.matrix)

    def _supervise(self, proc: subprocess.Popen, run: CellRun, stop: threading.Event) -> None:
        deadline = time.monotonic() + self.matrix.timeouts.per_cell
        while time.monotonic() < deadline:
            try:
                run.exit_code = proc.wait(timeout=POLL_S)
                return
            except subprocess.TimeoutExpired:
                if stop.is_set():
                    run.interrupted = True
                    return
        run.timed_out = True
        pythons = [pid for pid, cmd in session_members(proc.pid) if "python" in cmd.split(" ", 1)[0] and "compat.cellentry" not in cmd]
        for pid in pythons:
            try:
                os.kill(pid, signal.SIGUSR1)
            except OSError:
                pass
        wait_for_dumps(run.out / "dumps", expected=len(pythons))
        _kill_group(proc)
        run.exit_code = proc.wait()


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the cell's process group (the whole PID namespace goes with its init)."""
    try:
        # Also after a normal exit: without a PID namespace, leftovers share the group.
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
