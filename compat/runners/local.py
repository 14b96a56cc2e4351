"""The ``local`` runner: host interpreters in uv-made venvs, same outputs as docker.

Each cell runs in its own session and process group and, where the host
allows it, its own PID namespace (``unshare --pid --fork --mount-proc``), so
the kill at the time bound takes every descendant with it. A cell whose
Python is missing on the host is written as ``unavailable``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..cell import protocol as P
from ..cell import session as cell_session
from ..errors import EnvironmentFailed, PythonUnavailable
from ..matrix import Cell, Matrix
from ..paths import CACHE_ROOT
from ..results.schema import CellMeta
from .base import (
    CellRun,
    prepare_out,
    record,
    remove_stage,
    stage_plugin,
    unprepared_meta,
)
from .cache import target_files
from .command import entry_spec
from .install import SCRIPT, Install, install_for
from .locks import exclusive
from .supervise import stop_from_outside, supervise
from .wheel import TargetBuildError, target_wheels

VENV_ROOT = CACHE_ROOT / "venvs"


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise EnvironmentFailed("the local runner needs uv on PATH (https://docs.astral.sh/uv/)")
    return uv


def _uv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("UV_PYTHON", "VIRTUAL_ENV")}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def find_python(version: str) -> str | None:
    proc = subprocess.run(
        [_uv(), "python", "find", version], capture_output=True, text=True, env=_uv_env(), check=False
    )
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def venv_for(matrix: Matrix, python_exe: str, python: str, group: str) -> Path:
    """A venv made as the cell's image is (same files, same ``uv sync``), reused while they are unchanged."""
    install = install_for(matrix, group)
    digest = hashlib.sha256(f"{install.digest()}\0{python_exe}\0{group}".encode()).hexdigest()[:12]
    venv = VENV_ROOT / f"py{python}-{group}-{digest}"
    if (venv / ".complete").exists():
        return venv
    _uv()
    with exclusive(str(venv)):
        if not (venv / ".complete").exists():
            _make_venv(install, venv, python_exe, python, group)
    return venv


def _make_venv(install: Install, venv: Path, python_exe: str, python: str, group: str) -> None:
    with tempfile.TemporaryDirectory(prefix="spawn-compat-project-") as project:
        install.copy_to(Path(project))
        cmd = ["sh", SCRIPT, str(venv), python_exe]
        proc = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=_uv_env(), check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:] or ["no output"]
        raise EnvironmentFailed(
            f"installing py{python}-{group} (uv) failed: {' | '.join(tail)}", output=proc.stdout + proc.stderr
        )
    (venv / ".complete").touch()


def pid_namespace_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        probe = subprocess.run(
            [unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


class LocalRunner:
    kind: Literal["local"] = "local"

    def __init__(self, matrix: Matrix, run_id: str, pytest_args: Sequence[str], out_dir: Path | None = None) -> None:
        self.matrix = matrix
        self.run_id = run_id
        self.pytest_args = tuple(pytest_args)
        self.files_digest = target_files(matrix, out_dir)[1]
        # The target's wheel directory (None: not installed), or why it could not be built.
        self.wheels: Path | TargetBuildError | None = None
        self.stage = stage_plugin()
        self.namespace = pid_namespace_works()
        # Why there is no venv: PythonUnavailable (no interpreter), or what stopped its making.
        self.venvs: dict[tuple[str, str], Path | EnvironmentFailed] = {}
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def prepare(self, cells: Sequence[Cell]) -> None:
        if cells:
            try:
                self.wheels = target_wheels(self.matrix, self.files_digest)
            except TargetBuildError as exc:
                self.wheels = exc
        for python, group in sorted({(c.python, c.group) for c in cells}):
            exe = find_python(python)
            if exe is None:
                why = f"Python {python} is not installed on this host (uv python find {python})"
                self.venvs[(python, group)] = PythonUnavailable(why)
                continue
            try:
                self.venvs[(python, group)] = venv_for(self.matrix, exe, python, group)
            except EnvironmentFailed as exc:
                self.venvs[(python, group)] = exc

    def environment(self, cell: Cell) -> str | None:
        venv = self.venvs.get((cell.python, cell.group))
        if not isinstance(venv, Path):
            return None
        # The venv's name hashes its install and interpreter path; pyvenv.cfg names the version.
        return f"{venv}\0{(venv / 'pyvenv.cfg').read_text(errors='replace')}"

    def abort(self) -> None:
        with self._lock:
            for proc in self._procs:
                _kill_group(proc)

    def close(self) -> None:
        self.abort()
        remove_stage(self.stage)

    def command(self, venv: Path, cell: Cell, out: Path, reuse: Sequence[str] = ()) -> list[str]:
        target = str(self.matrix.target_dir)
        wheels = str(self.wheels) if isinstance(self.wheels, Path) else None
        spec = entry_spec(
            self.matrix, cell, out=str(out.resolve()), cwd=target, plugin=str(self.stage),
            extra=self.pytest_args, fresh_dirs=False, wheels=wheels, reuse=reuse,
        )  # fmt: skip
        cmd = [str(venv / "bin" / "python"), "-m", P.ENTRY_MODULE, "run", json.dumps(spec)]
        if self.namespace:
            cmd = ["unshare", "--pid", "--fork", "--mount-proc", *cmd]
        return cmd

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": str(self.stage),
            P.ENV_SCOPE: "all" if self.namespace else "session",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if self.matrix.target.dump_files:
            env[P.ENV_TARGET_DUMPS] = json.dumps(self.matrix.target.dump_files)
        env.pop("VIRTUAL_ENV", None)
        return env

    def run_cell(self, cell: Cell, out: Path, stop: threading.Event, reuse: Sequence[str] = ()) -> CellMeta:
        venv = self.venvs.get((cell.python, cell.group), EnvironmentFailed("its venv was never prepared"))
        if isinstance(venv, EnvironmentFailed):
            return unprepared_meta(cell, self.run_id, "local", out, venv)
        if isinstance(self.wheels, TargetBuildError):
            return unprepared_meta(cell, self.run_id, "local", out, self.wheels)
        run = CellRun(
            cell=cell, run_id=self.run_id, runner="local", out=prepare_out(out), pytest_args=self.pytest_args,
            reuse=tuple(reuse),
        )  # fmt: skip

        def body(run: CellRun) -> None:
            with tempfile.TemporaryFile() as stdout:
                proc = subprocess.Popen(
                    self.command(venv, cell, out, reuse), stdout=stdout, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=self.env(), cwd=self.matrix.target_dir, start_new_session=True,
                )  # fmt: skip
                with self._lock:
                    self._procs.add(proc)
                try:
                    supervise(LocalCell(proc, venv, run.out, self.env()), run, self.matrix, stop)
                finally:
                    _kill_group(proc)
                    with self._lock:
                        self._procs.discard(proc)
                    stdout.seek(0)
                    run.stdout = stdout.read().decode(errors="replace")

        return record(run, self.matrix, stop, body)


class LocalCell:
    """A local cell's process tree as the supervision sees it (``supervise.CellProcess``).

    The entry's commands run here, outside the cell's PID namespace, on the cell's
    process tree (its root is the process this runner started); ``stop-test`` is
    done here too, on the host's numbers for the cell's pytest.
    """

    def __init__(self, proc: subprocess.Popen[bytes], venv: Path, out: Path, env: dict[str, str]) -> None:
        self.proc, self.venv, self.out, self.env = proc, venv, out.resolve(), env

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def pids(self) -> list[int]:
        return [pid for pid in cell_session.tree(self.proc.pid) if pid != self.proc.pid]

    def entry(self, *args: str, bound: float) -> tuple[int, str]:
        argv = [a.replace("{out}", str(self.out)) for a in args]
        if argv[:1] == ["stop-test"]:
            return 0, json.dumps(self._stop_test(*argv[1:]))
        command = [str(self.venv / "bin" / "python"), "-m", P.ENTRY_MODULE, *argv, str(self.proc.pid)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=bound, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return -1, str(exc)
        return done.returncode, done.stdout

    def _stop_test(self, out: str) -> dict[str, object]:
        return stop_from_outside(self, Path(out))

    def kill(self) -> None:
        _kill_group(self.proc)

    def out_of_memory(self) -> bool:
        return False  # no memory limit outside a container

    def pids_usage(self) -> tuple[int, int] | None:
        return None  # no pids limit outside a container


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the cell's process group (the whole PID namespace goes with its init)."""
    # Also after a normal exit: without a PID namespace, leftovers share the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
