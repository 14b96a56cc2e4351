"""What every runner shares: a cell's command, its output directory, and its outcome.

A runner (``docker``, ``local``) starts a cell and watches it; everything
else about the cell is decided here, once: the pytest arguments, the spec
the in-cell entry reads, how the observed run becomes ``meta.json``
(``classify``), and how an exception while running a cell becomes its
outcome (``record``: a machinery failure is that cell's ``error`` and the run
goes on; only an interrupt interrupts).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from ..cell import protocol as P
from ..errors import EnvironmentFailed, PythonUnavailable
from ..matrix import Cell, Matrix
from ..matrix.cells import axes_of
from ..paths import CELL_PACKAGE
from ..results.probe import any_test_ran, crash_message, log_tail, refusal_reason, running_test
from ..results.schema import CellLimits, CellMeta, CellOutcome, RunnerKind
from .command import selection

DUMP_WAIT_S = 3.0
_TAG = re.compile(r"^(" + "|".join(P.TAGS) + r") (.*)$", re.M)
STAGE_PREFIX = "spawn-compat-plugin-"
NO_TESTS = 5  # pytest's exit code when nothing was collected
# pytest's exit codes for its own failures before or outside the tests: internal error, usage error.
PYTEST_CRASHED = {3: "an internal error", 4: "a usage error"}


def stage_plugin(target_files: Sequence[str] = ()) -> Path:
    """A world-readable directory holding the stdlib-only ``compat.cell`` package.

    Only the in-cell package goes in, so a cell never imports the service
    (docker, rich) and a ``compat`` directory of the target's is shadowed.
    ``target_files`` (relative paths) are listed beside it for cells that copy the target.
    """
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-"))
    pkg = stage / "compat"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copytree(CELL_PACKAGE, pkg / "cell", ignore=shutil.ignore_patterns("__pycache__"))
    (stage / P.FILES_LIST).write_bytes("\0".join(target_files).encode(errors="surrogateescape"))
    (stage / P.LIFELINE).touch()
    for path in (stage, *stage.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    # Held, exclusively, for as long as this process lives: its cells see its death within a second
    # (a SIGKILL leaves no time to stop them otherwise).
    lifeline = os.open(stage / P.LIFELINE, os.O_RDONLY | os.O_CLOEXEC)
    fcntl.flock(lifeline, fcntl.LOCK_EX)
    _LIFELINES[stage] = lifeline
    return stage


_LIFELINES: dict[Path, int] = {}


def remove_stage(stage: Path) -> None:
    """The staged directory, and the lifeline its cells watch (they are done)."""
    fd = _LIFELINES.pop(stage, None)
    if fd is not None:
        os.close(fd)
    shutil.rmtree(stage, ignore_errors=True)


def remove_orphan_stages() -> list[str]:
    """Staged plugin directories whose runner (the pid in their name) is gone."""
    removed = []
    for stage in Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*"):
        pid = stage.name.removeprefix(STAGE_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(str(stage))
    return removed


def prepare_out(out: Path) -> Path:
    """A fresh cell directory the cell's non-root user can write into.

    Whatever is in its place goes: the results directory belongs to this run (it holds the
    directory's lock), so a file or link there is stale, never data of another run.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)
    for path in (out, out / P.DUMPS, out / P.HANGS):
        path.mkdir(parents=True, exist_ok=True)
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
    # Test modules this run left out (runners/incremental.py): nothing selected is then no empty selection.
    reuse: tuple[str, ...] = ()
    image: str | None = None
    failure: str = ""
    # The test running when the bound expired, read before anything (forensics) disturbed the cell.
    running: str | None = None
    # The user's pytest arguments, for a reason that says what a selection matched.
    pytest_args: tuple[str, ...] = ()


def tagged(stdout: str) -> dict[str, dict[str, Any]]:
    found = {}
    for tag, payload in _TAG.findall(stdout):
        try:
            found[tag] = json.loads(payload)
        except ValueError:
            continue
    return found


def classify(run: CellRun, matrix: Matrix) -> tuple[CellOutcome, str, str | None]:
    """(outcome, reason, running) of a finished cell run."""
    bound = matrix.timeouts.per_cell
    if run.interrupted:
        return "error", INTERRUPTED_REASON, running_test(run.out)
    if run.timed_out:
        running = run.running or running_test(run.out)
        where = f" while {running} was running" if running else ""
        return "timeout", f"cell exceeded its {bound:g} s bound{where}", running
    if run.failure:
        return "error", run.failure, running_test(run.out)
    info = tagged(run.stdout)
    setup = info.get(P.TAG_SETUP, {})
    if setup.get("failed"):
        return "error", f"{setup['failed']} failed: {setup.get('detail', '')}", None
    pytest_exit = info.get(P.TAG_PYTEST, {}).get("exit")
    if pytest_exit is None:
        return (
            "error",
            f"cell exited with {run.exit_code} before pytest finished: {log_tail(run.out)}",
            running_test(run.out),
        )
    # A refusal stops pytest before any test (a usage error, pytest.exit with any code): an empty
    # selection (exit 5) is the selection's failure, whatever the output says.
    if pytest_exit not in (0, NO_TESTS) and not any_test_ran(run.out):
        reason = refusal_reason(run.out, matrix.target.unsupported_patterns)
        if reason is not None:
            return "unsupported", reason, None
    if pytest_exit == NO_TESTS and run.reuse:
        return "completed", "", None  # every module it collected was one it reused
    if pytest_exit == NO_TESTS:
        chosen = selection(matrix, run.cell, run.pytest_args)
        return "error", f"pytest collected no tests (exit 5): the selection matched nothing: {chosen}", None
    if pytest_exit in (0, 1):
        return "completed", "", None
    if pytest_exit in PYTEST_CRASHED and not any_test_ran(run.out):
        what = PYTEST_CRASHED[pytest_exit]
        return (
            "error",
            f"the target's pytest stopped with {what} (exit {pytest_exit}) before any test: {crash_message(run.out)}",
            None,
        )
    return "error", f"pytest exited with {pytest_exit}: {log_tail(run.out)}", None


INTERRUPTED_REASON = "interrupted (Ctrl-C or SIGTERM) before the cell finished"


def prune_dumps(dumps: Path) -> None:
    """Dump files are opened when handlers are registered; empty ones say nothing."""
    for path in dumps.glob("*.txt"):
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except OSError:
            continue


def finish_meta(run: CellRun, matrix: Matrix) -> CellMeta:
    prune_dumps(run.out / P.DUMPS)
    outcome, reason, running = classify(run, matrix)
    info = tagged(run.stdout)
    env = info.get(P.TAG_ENV, {})
    py = info.get(P.TAG_PYTEST, {})
    finished = time.time()
    cell = run.cell
    meta = CellMeta(
        cell=cell.id,
        **axes_of(cell),
        run_id=run.run_id,
        runner=run.runner,
        pytest_args=tuple(run.pytest_args),
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
        interrupted=run.interrupted,
        limits=CellLimits(
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
    tmp = out / f"{P.META}.tmp"
    tmp.write_bytes(msgspec.json.encode(meta))
    tmp.replace(out / P.META)


def unprepared_meta(cell: Cell, run_id: str, runner: RunnerKind, out: Path, why: EnvironmentFailed) -> CellMeta:
    """The one mapping of a cell whose environment could not be made: no interpreter for it is
    `unavailable`; anything else (an image, a venv, the target's wheel) is the cell's `error`."""
    outcome: CellOutcome = "unavailable" if isinstance(why, PythonUnavailable) else "error"
    return static_meta(cell, run_id, runner, out, outcome, str(why), output=why.output)


def unrecorded_meta(cell: Cell, run_id: str, runner: RunnerKind, out: Path, reason: str) -> CellMeta:
    """A cell whose run failed outside its own recording (its directory could not be made...): an
    `error` with the reason, written where it can be, and kept in the run's results either way."""
    try:
        return static_meta(cell, run_id, runner, out, "error", reason)
    except OSError as again:
        now = time.time()
        return CellMeta(
            cell=cell.id, **axes_of(cell), run_id=run_id, runner=runner, outcome="error",
            reason=f"{reason}; not recorded in {out}: {again}", started=now, finished=now, duration_s=0.0,
        )  # fmt: skip


def static_meta(
    cell: Cell, run_id: str, runner: RunnerKind, out: Path, outcome: CellOutcome, reason: str, *, output: str = ""
) -> CellMeta:
    """A cell decided without running it: unavailable, unsupported by metadata, excluded, or a failed build.

    ``output`` (a failed build's whole output) is kept as the cell's output.log.
    """
    now = time.time()
    meta = CellMeta(
        cell=cell.id, **axes_of(cell), run_id=run_id, runner=runner,
        outcome=outcome, reason=reason, started=now, finished=now, duration_s=0.0,
    )  # fmt: skip
    prepare_out(out)
    if output:
        (out / P.OUTPUT).write_text(output)
    write_meta(out, meta)
    return meta


def wait_for_dumps(dumps: Path, expected: int, timeout: float = DUMP_WAIT_S) -> int:
    """Poll until ``expected`` non-empty dump files exist (or the deadline); return the count."""
    deadline = time.monotonic() + timeout
    while True:
        count = sum(1 for p in dumps.glob("*.txt") if p.stat().st_size > 0)
        if count >= expected or time.monotonic() >= deadline:
            return count
        time.sleep(0.05)


def collect_dumps(dump_output: str, out: Path, *, into: Path | None = None) -> list[int]:
    """Read what ``compat.cell.entry dump`` printed, keep it as signals.json (in ``into``), wait
    (bounded) for the dumps.

    Returns the pids that were signalled; nothing is kept when the dump said nothing readable.
    """
    try:
        found = json.loads(dump_output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return []
    (into or out).mkdir(parents=True, exist_ok=True)
    ((into or out) / P.SIGNALS).write_text(json.dumps(found, indent=1))
    pids = [p["pid"] for p in found.get("signalled", [])]
    wait_for_dumps(out / P.DUMPS, expected=len(pids))
    return pids


def record(run: CellRun, matrix: Matrix, stop: threading.Event, body: Callable[[CellRun], None]) -> CellMeta:
    """Run ``body`` and turn whatever happened into the cell's meta.json, on every path.

    An interrupt (Ctrl-C, SIGTERM, or the run being stopped) is recorded and
    re-raised; any other exception is the cell's own ``error``, and the run
    goes on.
    """
    try:
        body(run)
    except (KeyboardInterrupt, SystemExit):
        run.interrupted = True
        finish_meta(run, matrix)
        raise
    except Exception as exc:  # noqa: BLE001 - one cell's machinery failure is that cell's error
        if stop.is_set():
            run.interrupted = True
        else:
            run.failure = f"{type(exc).__name__}: {exc}"
    return finish_meta(run, matrix)


# -- runners --------------------------------------------------------------------


class CellRunner(Protocol):
    @property
    def kind(self) -> RunnerKind: ...
    @property
    def run_id(self) -> str: ...

    def prepare(self, cells: Sequence[Cell]) -> None: ...
    def environment(self, cell: Cell) -> str | None:
        """What the cell's environment is, for its cache key (an image id); None: not runnable."""
        ...

    def run_cell(self, cell: Cell, out: Path, stop: threading.Event, reuse: Sequence[str] = ()) -> CellMeta:
        """Run the cell; ``reuse``: test modules to leave out (their results are taken over)."""
        ...

    def abort(self) -> None: ...
    def close(self) -> None: ...
