"""What every runner shares: a cell's command, its output directory, and its outcome.

A runner (``docker``, ``local``) starts a cell and watches it; everything
else about the cell is decided here, once: the pytest arguments, the spec
the in-cell entry reads, how the observed run becomes ``meta.json``
(``classify``), and how an exception while running a cell becomes its
outcome (``record``: a machinery failure is that cell's ``error`` and the run
goes on; only an interrupt interrupts).
"""

from __future__ import annotations

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
from typing import Any, Literal, Protocol

import msgspec

from ..cell import protocol as P
from ..matrix import Cell, Matrix, substitute
from ..paths import ROOT
from ..results.raw import CellLimits, CellMeta, CellOutcome, Events, parse_events, read_raw

DUMP_WAIT_S = 3.0
# The hang forensics step's hard bound (it needs about 5 s: trees, a CPU sample, one SIGINT probe).
FORENSICS_BOUND_S = 20
EXPIRY_GRACE_S = 60.0  # past the cell bound, before a cell gives up on its runner
CTR_OUT, CTR_TARGET, CTR_PLUGIN = "/out", "/target", "/opt/compat/plugin"
# The embedded target is not installed in images, so its plugin is loaded by name.
DEFAULT_TARGET_ARGS = ("-p", "backends.testing.plugin", "--backends-dump-dir={dumps}")
_TAG = re.compile(r"^(" + "|".join(P.TAGS) + r") (.*)$", re.M)
REFUSAL_LINES = 6
STAGE_PREFIX = "spawn-compat-plugin-"
NO_TESTS = 5  # pytest's exit code when nothing was collected

RunnerKind = Literal["docker", "local"]


# -- what a cell runs ---------------------------------------------------------


def pytest_argv(matrix: Matrix, cell: Cell, *, out: str, extra: Sequence[str] = ()) -> list[str]:
    """pytest's arguments for a cell, with ``{dumps}``/``{out}`` pointing at ``out``."""
    target = matrix.target
    target_args = target.pytest_args
    if not target_args and matrix.target_dir == ROOT:
        target_args = DEFAULT_TARGET_ARGS
    backend = target.backend_map.get(cell.backend, cell.backend)
    fill = {"dumps": f"{out}/{P.DUMPS}", "out": out}
    axis_args = [
        substitute(arg, {"value": dict(cell.extra)[axis.name]})
        for axis in matrix.axes.extra
        for arg in axis.pytest_args
    ]
    return [
        *target.tests,
        f"{target.backend_option}={backend}",
        f"--capture={cell.capture}",
        *axis_args,
        "-p", P.PLUGIN_MODULE,
        "-p", "no:cacheprovider",
        f"--junitxml={out}/{P.JUNIT}",
        *(substitute(arg, fill) for arg in target_args),
        *extra,
    ]  # fmt: skip


def entry_spec(matrix: Matrix, cell: Cell, *, out: str, cwd: str, extra: Sequence[str], fresh_dirs: bool) -> str:
    return json.dumps(
        {
            "out": out,
            "cwd": cwd,
            "pytest": pytest_argv(matrix, cell, out=out, extra=extra),
            "per_test_timeout": matrix.timeouts.per_test,
            # The runner enforces the cell's bound from outside; this one only
            # acts when the runner is gone (SIGKILLed, OOM), so no cell runs on.
            "expire_after": matrix.timeouts.per_cell + EXPIRY_GRACE_S,
            "env": dict(matrix.target.env),
            "fresh_dirs": fresh_dirs,
            "reaper": matrix.target.reaper,
        }
    )


def python_path(matrix: Matrix, root: str) -> list[str]:
    """The target's import paths as the cell sees them (``root`` is where it is mounted)."""
    return [str(Path(root) / p) if p != "." else root for p in matrix.target.import_paths]


def stage_plugin() -> Path:
    """A world-readable directory holding the stdlib-only ``compat.cell`` package.

    Only the in-cell package goes in, so a cell never imports the service
    (docker, rich) and a ``compat`` directory of the target's is shadowed.
    """
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-"))
    pkg = stage / "compat"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copytree(
        Path(__file__).resolve().parents[1] / "cell", pkg / "cell", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in (stage, *stage.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return stage


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
    """A fresh cell directory the cell's non-root user can write into."""
    if out.exists():
        shutil.rmtree(out)
    (out / P.DUMPS).mkdir(parents=True)
    for path in (out, out / P.DUMPS):
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
    # The test running when the bound expired, read before anything (forensics) disturbed the cell.
    running: str | None = None


def tagged(stdout: str) -> dict[str, dict[str, Any]]:
    found = {}
    for tag, payload in _TAG.findall(stdout):
        try:
            found[tag] = json.loads(payload)
        except ValueError:
            continue
    return found


def _events(out: Path) -> Events | None:
    try:
        return parse_events(read_raw(out / P.EVENTS))
    except OSError:
        return None


def running_test(out: Path) -> str | None:
    """The last test with a ``start`` and no ``result`` in events.jsonl."""
    events = _events(out)
    pending = [n for n in events.started if n not in events.results] if events is not None else []
    return pending[-1] if pending else None


def any_test_ran(out: Path) -> bool:
    events = _events(out)
    return events is not None and bool(events.started)


def log_tail(out: Path, lines: int = 3) -> str:
    try:
        text = (out / P.OUTPUT).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def classify(run: CellRun, matrix: Matrix) -> tuple[CellOutcome, str, str | None]:
    """(outcome, reason, running) of a finished cell run."""
    bound = matrix.timeouts.per_cell
    if run.interrupted:
        return "error", "interrupted (Ctrl-C or SIGTERM) before the cell finished", running_test(run.out)
    if run.timed_out:
        running = run.running or running_test(run.out)
        where = f" while {running} was running" if running else ""
        return "timeout", f"cell exceeded its {bound:g} s bound{where}", running
    if run.failure:
        return "error", run.failure, running_test(run.out)
    pytest_exit = tagged(run.stdout).get(P.TAG_PYTEST, {}).get("exit")
    if pytest_exit is None:
        return (
            "error",
            f"cell exited with {run.exit_code} before pytest finished: {log_tail(run.out)}",
            running_test(run.out),
        )
    if pytest_exit != 0 and not any_test_ran(run.out):
        reason = refusal_reason(run.out, matrix.target.unsupported_patterns)
        if reason is not None:
            return "unsupported", reason, None
    if pytest_exit == NO_TESTS:
        return (
            "error",
            "pytest collected no tests (exit 5): the selection (-k, -m, node ids, test paths) matched nothing",
            None,
        )
    if pytest_exit in (0, 1):
        return "completed", "", None
    return "error", f"pytest exited with {pytest_exit}: {log_tail(run.out)}", None


def refusal_reason(out: Path, patterns: Sequence[str]) -> str | None:
    """The target's own refusal message: the ``reason`` group, else the match and what follows."""
    try:
        text = (out / P.OUTPUT).read_text(errors="replace")
    except OSError:
        return None
    for pattern in patterns:
        match = re.search(pattern, text, re.M)
        if match is None:
            continue
        reason = match.groupdict().get("reason")
        if reason and reason.strip():
            return reason.strip()
        following = text[match.start() :].strip().splitlines()[:REFUSAL_LINES]
        return " ".join(line.strip() for line in following if line.strip())
    return None


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
        python=cell.python,
        group=cell.group,
        backend=cell.backend,
        capture=cell.capture,
        extra=dict(cell.extra),
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


def static_meta(cell: Cell, run_id: str, runner: RunnerKind, out: Path, outcome: CellOutcome, reason: str) -> CellMeta:
    """A cell decided without running it: unavailable, unsupported by metadata, excluded, or a failed image."""
    now = time.time()
    meta = CellMeta(
        cell=cell.id, python=cell.python, group=cell.group, backend=cell.backend,
        capture=cell.capture, extra=dict(cell.extra), run_id=run_id, runner=runner,
        outcome=outcome, reason=reason, started=now, finished=now, duration_s=0.0,
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


def collect_dumps(dump_output: str, out: Path) -> list[int]:
    """Read what ``compat.cell.entry dump`` printed, keep it as signals.json, wait (bounded) for the dumps.

    Returns the pids that were signalled; nothing is kept when the dump said nothing readable.
    """
    try:
        found = json.loads(dump_output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return []
    (out / P.SIGNALS).write_text(json.dumps(found, indent=1))
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

    def run_cell(self, cell: Cell, out: Path, stop: threading.Event) -> CellMeta: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...
