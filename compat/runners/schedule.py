"""Run cells: pick a runner, record what is n/a without running it, run the rest in parallel.

``run_cells`` returns one ``CellMeta`` per cell, each also written to
``<out_dir>/<cell-id>/meta.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..errors import ConfigError, EngineError, OutputBusy
from ..matrix import Cell, Matrix, new_run_id
from ..matrix.sessions import not_applicable
from ..results.owner import claim
from ..results.runs import RUNS_LOG, RunRecord
from ..results.schema import CellMeta, CellOutcome
from . import cache, incremental, kinds
from .base import CellRunner, static_meta, unrecorded_meta, write_meta
from .docker import DockerRunner
from .local import LocalRunner

Observer = Callable[[str, Cell, CellMeta | None], None]


def choose_runner(
    kind: str, matrix: Matrix, run_id: str, pytest_args: Sequence[str], out_dir: Path | None = None
) -> CellRunner:
    if kind not in kinds.CHOICES:
        raise ConfigError(f"--runner: unknown runner {kind!r}; use one of {', '.join(kinds.CHOICES)}")
    if kind in (kinds.AUTO, "docker"):
        try:
            return DockerRunner(matrix, run_id, pytest_args, out_dir)
        except EngineError:
            if kind == "docker":
                raise
    return LocalRunner(matrix, run_id, pytest_args, out_dir)


def run_cells(
    matrix: Matrix,
    cells: Sequence[Cell],
    *,
    run_id: str | None = None,
    runner: str = "auto",
    out_dir: Path | None = None,
    jobs: int = 1,
    pytest_args: Sequence[str] = (),
    progress: bool = True,
    use_cache: bool = True,
    verbosity: int = 0,
    narrowed_tests: Sequence[str] = (),
) -> list[CellMeta]:
    """Run ``cells``; with ``use_cache``, a cell whose inputs are unchanged keeps its last clean result.

    ``narrowed_tests`` says the target's tests were replaced by these (``--failed-tests``); with any
    ``pytest_args`` they are kept in each meta as its ``selection``, which makes the run partial.
    ``out_dir`` defaults to the config's raw directory (``<[report] out>/raw``).
    """
    out_dir = out_dir if out_dir is not None else matrix.raw_dir
    run_id = run_id or new_run_id()
    selection = (*narrowed_tests, *pytest_args)
    with own_output(out_dir, run_id):
        claim(out_dir, matrix)
        return _run(
            matrix, cells, run_id, runner, out_dir, jobs, pytest_args, progress, use_cache, verbosity, selection
        )


def _run(
    matrix: Matrix,
    cells: Sequence[Cell],
    run_id: str,
    runner: str,
    out_dir: Path,
    jobs: int,
    pytest_args: Sequence[str],
    progress: bool,
    use_cache: bool,
    verbosity: int,
    selection: tuple[str, ...],
) -> list[CellMeta]:
    chosen = choose_runner(runner, matrix, run_id, pytest_args, out_dir)
    try:
        decided = not_applicable(matrix, cells)
        chosen.prepare([c for c in cells if c not in decided])
        keyed = cache_keys(matrix, chosen, [c for c in cells if c not in decided], out_dir, pytest_args)
        keys = keyed.keys
        hits = {c: m for c, k in keys.items() if use_cache and (m := cache.lookup(out_dir / c.id, k)) is not None}
        plan = Plan(
            decided=decided, keys=keys, hits=hits, selection=selection, contexts=keyed.contexts,
            inputs=keyed.inputs, incremental=use_cache and not selection,
        )  # fmt: skip
        from .progress import PlainLog, live_progress, print_summary

        if progress and sys.stdout.isatty():
            with live_progress(
                cells, out_dir, run_id=run_id, runner=chosen.kind, jobs=jobs, cached=list(hits), verbosity=verbosity
            ) as board:
                metas = _schedule(matrix, chosen, cells, plan, out_dir, jobs, board)
            record_run(out_dir, run_id, metas, selection)
            print_summary(board.done, out_dir, matrix.source, verbosity=verbosity)
            return metas
        log = PlainLog(cells, out_dir, verbosity=verbosity)
        metas = _schedule(matrix, chosen, cells, plan, out_dir, jobs, log)
        record_run(out_dir, run_id, metas, selection)
        print_summary(log.finished, out_dir, matrix.source, verbosity=verbosity)
        return metas
    finally:
        chosen.close()


LOCK_NAME = ".compat-run.lock"


def record_run(out_dir: Path, run_id: str, metas: Sequence[CellMeta], selection: Sequence[str]) -> None:
    """One line per finished run in the results directory's run log: which cells it ran, narrowed or
    not. The report folds every cell's newest result since the last run that covered them all."""
    entry = RunRecord(
        run_id=run_id, finished=time.time(), cells=tuple(m.cell for m in metas), selection=tuple(selection)
    )
    with open(out_dir / RUNS_LOG, "ab") as f:
        f.write(msgspec.json.encode(entry) + b"\n")


@contextlib.contextmanager
def own_output(out_dir: Path, run_id: str) -> Iterator[None]:
    """Hold ``out_dir`` for this run: a second run into it refuses, naming the holder.

    Two runs writing one directory would leave cells holding one run's
    events and the other's meta. The lock is the kernel's (flock), so it
    goes with the process, however it dies.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another run"
            raise OutputBusy(f"{out_dir}: {holder} is writing its results here; wait for it or give --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"run {run_id} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)


def record_not_applicable(matrix: Matrix, cell: Cell, reason: str, run_id: str, runner: str, out: Path) -> CellMeta:
    outcome: CellOutcome = "excluded" if matrix.excluded(cell) is not None else "unsupported"
    return static_meta(cell, run_id, "docker" if runner == "docker" else "local", out, outcome, reason)


@dataclass(frozen=True)
class Plan:
    """What is known about the cells before any runs: n/a ones, each runnable one's cache key, the cached ones."""

    decided: dict[Cell, str]
    keys: dict[Cell, str]
    hits: dict[Cell, CellMeta]
    selection: tuple[str, ...] = ()
    # Each cell's context (runners/incremental.py), the target's files now, and whether a re-run may
    # leave out unchanged modules (not in a run narrowed by pytest arguments or test ids).
    contexts: dict[Cell, str] = field(default_factory=dict)
    inputs: cache.RunInputs | None = None
    incremental: bool = False


@dataclass(frozen=True)
class Keys:
    keys: dict[Cell, str]
    contexts: dict[Cell, str]
    inputs: cache.RunInputs | None


def cache_keys(
    matrix: Matrix, runner: CellRunner, cells: Sequence[Cell], out_dir: Path, pytest_args: Sequence[str]
) -> Keys:
    """Each cell's cache key and context; a cell whose environment could not be made has neither."""
    if not cells:
        return Keys({}, {}, None)
    shared = cache.run_inputs(matrix, out_dir)
    # One environment per (python, group): every cell of it runs in the same image or venv.
    environments: dict[tuple[str, str], str | None] = {}
    keys: dict[Cell, str] = {}
    contexts: dict[Cell, str] = {}
    for cell in cells:
        pair = (cell.python, cell.group)
        if pair not in environments:
            environments[pair] = runner.environment(cell)
        environment = environments[pair]
        if environment is None:
            continue
        for into, with_target in ((keys, True), (contexts, False)):
            into[cell] = cache.cell_key(
                matrix, cell, runner=runner.kind, environment=environment, shared=shared, pytest_args=pytest_args,
                with_target=with_target,
            )  # fmt: skip
    return Keys(keys, contexts, shared)


def _run_one(
    matrix: Matrix, runner: CellRunner, plan: Plan, stop: threading.Event, cell: Cell, out: Path, hit: CellMeta | None
) -> CellMeta:
    """One cell: its n/a record, its reused result, or a run (keyed when its result is final)."""
    if cell in plan.decided:
        meta = record_not_applicable(matrix, cell, plan.decided[cell], runner.run_id, runner.kind, out)
    elif hit is not None:
        meta = cache.reuse(out, hit, runner.run_id)
    else:
        context = plan.contexts.get(cell)
        files = plan.inputs.files if plan.inputs is not None else None
        reuse = None
        if plan.incremental and context is not None and files is not None:
            reuse = incremental.plan(matrix, out, context, files)
        meta = runner.run_cell(cell, out, stop, reuse=reuse.modules if reuse else ())
        if files is not None:
            incremental.finish(out, reuse, files)
        key = plan.keys.get(cell)
        extra: dict[str, object] = {"selection": plan.selection} if plan.selection else {}
        if context is not None:
            extra["context_key"] = context
        if reuse is not None:
            extra["reused"] = len(reuse.results)
            extra["reused_from"] = tuple(sorted({r.reused_from for r in reuse.results.values()}))
        # Only a final result gets its key: nothing else is ever reused.
        if key and cache.final(out):
            extra["cache_key"] = key
        if extra:
            meta = msgspec.structs.replace(meta, **extra)
            write_meta(out, meta)
    return meta


def _schedule(
    matrix: Matrix,
    runner: CellRunner,
    cells: Sequence[Cell],
    plan: Plan,
    out_dir: Path,
    jobs: int,
    observe: Observer | None,
) -> list[CellMeta]:
    stop = threading.Event()
    results: dict[Cell, CellMeta] = {}
    decided = plan.decided

    def one(cell: Cell) -> None:
        if stop.is_set():
            return
        out = out_dir / cell.id
        hit = plan.hits.get(cell)
        if observe and hit is None:
            observe("start", cell, None)
        try:
            meta = _run_one(matrix, runner, plan, stop, cell, out, hit)
        except Exception as exc:  # noqa: BLE001 - what stops one cell is that cell's error, never the run's
            meta = unrecorded_meta(cell, runner.run_id, runner.kind, out, f"{type(exc).__name__}: {exc}")
        results[cell] = meta
        if observe:
            observe("done", cell, meta)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="cell")
    # n/a cells first: they cost nothing and show up at once.
    futures = [pool.submit(one, cell) for cell in sorted(cells, key=lambda c: c not in decided)]
    try:
        pending = set(futures)
        while pending:
            # A bounded wait keeps the main thread responsive to Ctrl-C.
            done, pending = wait(pending, timeout=0.2)
            for future in done:
                future.result()
    except BaseException:
        stop.set()
        runner.abort()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[cell] for cell in cells]
