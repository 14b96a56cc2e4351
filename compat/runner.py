"""Run cells: one isolated container (or local process tree) per cell.

``run_cells`` picks a runner (``docker`` where an engine answers, else
``local``), prepares what the cells need once (images or venvs), runs the
cells ``jobs`` at a time, and returns one ``CellMeta`` per cell, written to
``<out_dir>/<cell-id>/meta.json`` on every exit path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from .config import Cell, Matrix
from .errors import CompatError, EngineError
from .results import CellMeta, CellOutcome, Limits

ROOT = Path(__file__).resolve().parents[1]
DUMP_WAIT_S = 3.0
EXPIRY_GRACE_S = 60.0  # past the cell bound, before a cell gives up on its runner
CTR_OUT, CTR_TARGET, CTR_PLUGIN = "/out", "/target", "/opt/compat/plugin"
# The embedded target is not installed in images, so its plugin is loaded by name.
DEFAULT_TARGET_ARGS = ("-p", "backends.testing.plugin", "--backends-dump-dir={dumps}")
_TAG = re.compile(r"^(COMPAT-ENV|COMPAT-PYTEST|COMPAT-DONE) (.*)$", re.M)

RunnerKind = Literal["docker", "local"]


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


# -- what a cell runs ---------------------------------------------------------


def target_dir(matrix: Matrix) -> Path:
    return Path(matrix.target.path).resolve()


def pytest_argv(matrix: Matrix, cell: Cell, *, out: str, extra: Sequence[str] = ()) -> list[str]:
    """pytest's arguments for a cell, with ``{dumps}``/``{out}`` pointing at ``out``."""
    target = matrix.target
    target_args = target.pytest_args
    if not target_args and target_dir(matrix) == ROOT:
        target_args = DEFAULT_TARGET_ARGS
    backend = target.backend_map.get(cell.backend, cell.backend)
    fill = {"{dumps}": f"{out}/dumps", "{out}": out}
    return [
        *target.tests,
        f"{target.backend_option}={backend}",
        f"--capture={cell.capture}",
        "-p", "compat.cellplugin",
        "-p", "no:cacheprovider",
        f"--junitxml={out}/junit.xml",
        *(_fill(arg, fill) for arg in target_args),
        *extra,
    ]  # fmt: skip


def _fill(arg: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace(key, value)
    return arg


def entry_spec(matrix: Matrix, cell: Cell, *, out: str, cwd: str, extra: Sequence[str]) -> str:
    return json.dumps(
        {
            "out": out,
            "cwd": cwd,
            "pytest": pytest_argv(matrix, cell, out=out, extra=extra),
            "per_test_timeout": matrix.timeouts.per_test,
            # The runner enforces the cell's bound from outside; this one only
            # acts when the runner is gone (SIGKILLed, OOM), so no cell runs on.
            "expire_after": matrix.timeouts.per_cell + EXPIRY_GRACE_S,
        }
    )


def stage_plugin() -> Path:
    """A world-readable directory holding a stdlib-only ``compat`` package for cells.

    Only the in-cell modules go in, so a cell never imports the service (docker,
    rich) and the target's own ``compat`` directory, if any, is shadowed.
    """
    stage = Path(tempfile.mkdtemp(prefix="spawn-compat-plugin-"))
    pkg = stage / "compat"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("cellplugin.py", "cellentry.py"):
        shutil.copy(Path(__file__).with_name(name), pkg / name)
    for path in (stage, pkg, *pkg.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return stage


def prepare_out(out: Path) -> Path:
    """A fresh cell directory the cell's non-root user can write into."""
    if out.exists():
        shutil.rmtree(out)
    (out / "dumps").mkdir(parents=True)
    for path in (out, out / "dumps"):
        path.chmod(0o777)  # the cell runs as uid 1000 whatever the host user is
    return out


# -- what came out ------------------------------------------------------------


@dataclass
class CellRun:
    """What a runner observed; turned into CellMeta by ``finish_meta``."""

    cell: Cell
    run_id: str
    runner: RunnerKind
    out: Path
    started: float = field(default_factory=time.time)
    exit_code: int | None = None
    timed_out: bool = False
    interrupted: bool = False
    stdout: str = ""
    image: str | None = None
    failure: str = ""


def tagged(stdout: str) -> dict[str, dict]:
    found = {}
    for tag, payload in _TAG.findall(stdout):
        try:
            found[tag] = json.loads(payload)
        except ValueError:
            continue
    return found


def running_test(out: Path) -> str | None:
    """The last test with a ``start`` and no ``result`` in events.jsonl."""
    started: list[str] = []
    done: set[str] = set()
    try:
        lines = (out / "events.jsonl").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "start":
            started.append(event.get("nodeid"))
        elif event.get("event") == "result":
            done.add(event.get("nodeid"))
    pending = [n for n in started if n not in done]
    return pending[-1] if pending else None


def log_tail(out: Path, lines: int = 3) -> str:
    try:
        text = (out / "output.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def classify(run: CellRun, matrix: Matrix) -> tuple[CellOutcome, str, str | None]:
    """(outcome, reason, running) of a finished cell run."""
    bound = matrix.timeouts.per_cell
    if run.interrupted:
        return "error", "interrupted (Ctrl-C or SIGTERM) before the cell finished", running_test(run.out)
    if run.timed_out:
        running = running_test(run.out)
        where = f" while {running} was running" if running else ""
        return "timeout", f"cell exceeded its {bound:g} s bound{where}", running
    if run.failure:
        return "error", run.failure, None
    pytest_exit = tagged(run.stdout).get("COMPAT-PYTEST", {}).get("exit")
    if pytest_exit is None:
        return "error", f"cell exited with {run.exit_code} before pytest finished: {log_tail(run.out)}", running_test(run.out)
    if pytest_exit == 4:
        reason = unsupported_reason(run.out, matrix.target.unsupported_pattern)
        if reason is not None:
            return "unsupported", reason, None
    if pytest_exit in (0, 1, 5):
        return "completed", "", None
    return "error", f"pytest exited with {pytest_exit}: {log_tail(run.out)}", None


def unsupported_reason(out: Path, pattern: str) -> str | None:
    try:
        text = (out / "output.log").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(pattern, text)
    if match is None:
        return None
    return (match.groupdict().get("reason") or match.group(0)).strip()


def prune_dumps(dumps: Path) -> None:
    """Dump files are opened when handlers are registered; empty ones say nothing."""
    for path in dumps.glob("*.txt"):
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except OSError:
            continue


def finish_meta(run: CellRun, matrix: Matrix) -> CellMeta:
    prune_dumps(run.out / "dumps")
    outcome, reason, running = classify(run, matrix)
    info = tagged(run.stdout)
    env = info.get("COMPAT-ENV", {})
    py = info.get("COMPAT-PYTEST", {})
    finished = time.time()
    cell = run.cell
    meta = CellMeta(
        cell=cell.id,
        python=cell.python,
        group=cell.group,
        backend=cell.backend,
        capture=cell.capture,
        run_id=run.run_id,
        runner=run.runner,
        outcome=outcome,
        reason=reason,
        running=running,
        exit_code=py.get("exit", run.exit_code),
        image=run.image,
        python_version=env.get("python"),
        packages=env.get("packages", {}),
        started=run.started,
        finished=finished,
        duration_s=round(finished - run.started, 3),
        pytest_duration_s=py.get("duration"),
        limits=Limits(
            pids=matrix.limits.pids,
            memory=matrix.limits.memory,
            cpus=matrix.limits.cpus,
            timeout_s=matrix.timeouts.per_cell,
        ),
    )
    write_meta(run.out, meta)
    return meta


def write_meta(out: Path, meta: CellMeta) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "meta.json.tmp"
    tmp.write_bytes(msgspec.json.encode(meta))
    tmp.replace(out / "meta.json")


def unavailable_meta(cell: Cell, run_id: str, runner: RunnerKind, out: Path, reason: str) -> CellMeta:
    now = time.time()
    meta = CellMeta(
        cell=cell.id, python=cell.python, group=cell.group, backend=cell.backend,
        capture=cell.capture, run_id=run_id, runner=runner, outcome="unavailable",
        reason=reason, started=now, finished=now, duration_s=0.0,
    )  # fmt: skip
    write_meta(prepare_out(out), meta)
    return meta


def wait_for_dumps(dumps: Path, expected: int, timeout: float = DUMP_WAIT_S) -> int:
    """Poll until ``expected`` non-empty dump files exist (or the deadline); return the count."""
    deadline = time.monotonic() + timeout
    while True:
        count = sum(1 for p in dumps.glob("*.txt") if p.stat().st_size > 0)
        if count >= expected or time.monotonic() >= deadline:
            return count
        time.sleep(0.05)


# -- runners --------------------------------------------------------------------


class CellRunner(Protocol):
    kind: RunnerKind

    def prepare(self, cells: Sequence[Cell]) -> None: ...
    def run_cell(self, cell: Cell, out: Path, stop: threading.Event) -> CellMeta: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


def choose_runner(kind: str, matrix: Matrix, run_id: str, pytest_args: Sequence[str]) -> CellRunner:
    from .dockerrunner import DockerRunner
    from .localrunner import LocalRunner

    if kind not in ("auto", "docker", "local"):
        raise CompatError(f"unknown runner {kind!r}; use auto, docker or local")
    if kind in ("auto", "docker"):
        try:
            return DockerRunner(matrix, run_id, pytest_args)
        except EngineError:
            if kind == "docker":
                raise
    return LocalRunner(matrix, run_id, pytest_args)


Observer = Callable[[str, Cell, CellMeta | None], None]


def run_cells(
    matrix: Matrix,
    cells: Sequence[Cell],
    *,
    run_id: str | None = None,
    runner: str = "auto",
    out_dir: Path = Path("reports/raw"),
    jobs: int = 1,
    pytest_args: Sequence[str] = (),
    progress: bool = True,
) -> list[CellMeta]:
    run_id = run_id or new_run_id()
    backend = choose_runner(runner, matrix, run_id, pytest_args)
    try:
        backend.prepare(cells)
        if progress:
            from .progress import live_progress

            with live_progress(cells, run_id=run_id, runner=backend.kind) as observe:
                return _schedule(backend, cells, out_dir, jobs, observe)
        return _schedule(backend, cells, out_dir, jobs, None)
    finally:
        backend.close()


def _schedule(
    backend: CellRunner, cells: Sequence[Cell], out_dir: Path, jobs: int, observe: Observer | None
) -> list[CellMeta]:
    stop = threading.Event()
    results: dict[Cell, CellMeta] = {}

    def one(cell: Cell) -> None:
        if stop.is_set():
            return
        if observe:
            observe("start", cell, None)
        meta = backend.run_cell(cell, out_dir / cell.id, stop)
        results[cell] = meta
        if observe:
            observe("done", cell, meta)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="cell")
    futures = [pool.submit(one, cell) for cell in cells]
    try:
        pending = set(futures)
        while pending:
            # A bounded wait keeps the main thread responsive to Ctrl-C.
            done, pending = wait(pending, timeout=0.2)
            for future in done:
                future.result()
    except BaseException:
        stop.set()
        backend.abort()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[cell] for cell in cells]
