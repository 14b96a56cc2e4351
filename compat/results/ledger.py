"""The results ledger, ``reports/compat.json``: versioned, published as JSON Schema.

The ledger is the one document every view (Markdown, HTML, job summary) and
the next run's baseline diff are made from.  New fields get defaults so an
older ledger still decodes as a baseline.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from ..matrix import AXES
from ..matrix.cells import CellAxes, same_axes
from .schema import CellResult, Hang, Leaks, TestResult
from .status import CELL, FAILING, CellStatus, LedgerStatus

# 2: schema_version always written, "n/a" test results, partial runs, not-run counts in the diff.
SCHEMA_VERSION = 2
SCHEMA_ID = "https://spawn-compat.invalid/compat.schema.json"


class _Base(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    pass


class Environment(_Base, frozen=True):
    runner: str | None = None
    image: str | None = None
    python_version: str | None = None
    packages: dict[str, str] = {}


class Durations(_Base, frozen=True):
    cell_s: float | None = None
    pytest_s: float | None = None
    tests_s: float = 0.0


class LedgerCell(_Base, CellAxes, frozen=True, kw_only=True):
    id: str
    status: CellStatus
    # The run this result is from (a table folds each cell's newest since the last full run).
    run_id: str | None = None
    # The target's files changed since this result was made (its inputs.json differs from them now).
    stale: bool = False
    reason: str = ""
    counts: dict[str, int] = {}
    durations: Durations = Durations()
    leaks: Leaks = Leaks()
    environment: Environment = Environment()
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    running: str | None = None
    source: str = "none"
    notes: tuple[str, ...] = ()
    # The run whose result this is, when this run reused it (inputs unchanged).
    cached_from: str | None = None
    # Every hang investigated in the cell (per test, and the cell's own): class, evidence, where stuck.
    hangs: tuple[Hang, ...] = ()
    # New pytest processes the cell started after a test was stopped or its process died.
    restarts: int = 0
    # Tests whose results this run took over from earlier runs (their modules unchanged), and from which.
    reused: int = 0
    reused_from: tuple[str, ...] = ()


class LedgerResult(_Base, frozen=True):
    """A test's result in one cell (cell ids are the keys)."""

    status: LedgerStatus
    reason: str = ""
    message: str = ""
    when: str | None = None
    strict: bool | None = None
    duration_s: float | None = None
    # The pytest process it ran in: 0 the cell's first, N the Nth started after a stopped or dead one.
    session: int = 0
    # What it left alive in its process that still was at the session's end.
    leaked: tuple[str, ...] = ()
    # The run it was taken from, when this run reused it (its module unchanged since).
    reused_from: str = ""


class LedgerTest(_Base, frozen=True):
    nodeid: str
    results: dict[str, LedgerResult]
    why: str = ""


class TargetInfo(_Base, frozen=True):
    """What was tested: the project's name and commit (never a machine's path)."""

    name: str | None = None
    path: str | None = None
    revision: str | None = None


class Change(_Base, frozen=True):
    """One (test, cell) or cell whose status moved since the baseline."""

    kind: str
    cell: str
    nodeid: str | None = None
    before: str | None = None
    after: str | None = None
    reason: str = ""


class Diff(_Base, frozen=True):
    baseline: str
    baseline_run_id: str | None = None
    problem: str = ""
    changes: tuple[Change, ...] = ()
    # What the baseline has and this run did not run: never silently "no changes".
    not_run_cells: tuple[str, ...] = ()
    not_run_tests: int = 0

    def of(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.kind in REGRESSIONS]


DIFF_KINDS = {
    "new-failure": "New failures",
    "strict-xpass": "Strict xfails that now pass (they fail the run)",
    "cell-worse": "Cells whose status got worse",
    "fixed": "Fixed",
    "xfail-now-passes": "Xfails that now pass",
    "new-skip": "New skips",
    "flaky": "Newly flaky",
    "cell-status": "Cells whose status changed otherwise",
}
REGRESSIONS = frozenset({"new-failure", "strict-xpass", "cell-worse"})
# How bad a cell status is, for "got worse"; n/a statuses are not worse than ok.


class Ledger(msgspec.Struct, frozen=True, kw_only=True):
    # Not omit_defaults: schema_version is written even when it is the default.
    schema_version: int = SCHEMA_VERSION
    run_id: str
    timestamp: float
    target: TargetInfo = TargetInfo()
    axes: dict[str, tuple[str, ...]]
    cells: tuple[LedgerCell, ...]
    tests: tuple[LedgerTest, ...]
    diff: Diff | None = None
    # Why this run is not the whole matrix ("" when it is); a partial run is not published by default.
    partial: str = ""
    # The distributions whose versions the report names: pytest, the target's own dependencies
    # and its groups' (canonical names).
    key_packages: tuple[str, ...] = ()


_encoder = msgspec.json.Encoder()


def encode(ledger: Ledger) -> bytes:
    return _encoder.encode(ledger)


def decode(data: bytes) -> Ledger:
    return msgspec.json.decode(data, type=Ledger)


def schema() -> dict[str, object]:
    doc = msgspec.json.schema(Ledger)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **doc}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------
# building


def ledger_cell(cell: CellResult) -> LedgerCell:
    meta = cell.meta
    counts: dict[str, int] = {}
    for t in cell.tests.values():
        counts[t.status] = counts.get(t.status, 0) + 1
    return LedgerCell(
        id=cell.cell,
        **same_axes(cell),
        status=cell.status,
        reason=cell.reason,
        counts=counts,
        durations=Durations(
            cell_s=meta.duration_s if meta else None,
            pytest_s=meta.pytest_duration_s if meta else None,
            tests_s=round(sum(t.duration_s or 0.0 for t in cell.tests.values()), 3),
        ),
        leaks=cell.leaks,
        environment=Environment(
            runner=meta.runner,
            image=meta.image,
            python_version=meta.python_version,
            packages=meta.packages,
        )
        if meta
        else Environment(),
        exit_code=meta.exit_code if meta else None,
        started=meta.started if meta else None,
        finished=meta.finished if meta else None,
        running=meta.running if meta else None,
        source=cell.source,
        notes=cell.notes,
        cached_from=meta.cached_from if meta else None,
        hangs=cell.hangs,
        restarts=cell.restarts,
        run_id=meta.run_id if meta else None,
        reused=meta.reused if meta else 0,
        reused_from=meta.reused_from if meta else (),
    )


def _ledger_result(t: TestResult, na_skips: Sequence[re.Pattern[str]] = ()) -> LedgerResult:
    na = t.status == "skipped" and any(p.search(t.reason) for p in na_skips)
    return LedgerResult(
        status="n/a" if na else t.status,
        reason=t.reason,
        message=t.message,
        when=t.when,
        strict=t.strict,
        duration_s=t.duration_s,
        session=t.session,
        leaked=t.leaked,
        reused_from=t.reused_from,
    )


def ledger_tests(
    cells: Sequence[CellResult], why: dict[str, str], na_skips: Sequence[str] = ()
) -> tuple[LedgerTest, ...]:
    """Each test with its result in every cell that has one (a cell that ended
    early already holds `not-run` for exactly what it collected and never ran)."""
    nodeids = sorted({n for c in cells for n in c.tests})
    patterns = [re.compile(p) for p in na_skips]
    return tuple(
        LedgerTest(
            nodeid=nodeid,
            results={c.cell: _ledger_result(t, patterns) for c in cells if (t := c.tests.get(nodeid)) is not None},
            why=why.get(nodeid, ""),
        )
        for nodeid in nodeids
    )


def axes_of(cells: Iterable[CellResult], declared: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """The matrix axes in declared order (a target's own axes after the built-in
    ones), plus any value only the cells show."""
    cells = list(cells)
    names = list(dict.fromkeys([*AXES, *(declared or {}), *(k for c in cells for k in c.extra)]))
    axes = {}
    for axis in names:
        values = list((declared or {}).get(axis, ()))
        for c in cells:
            v = getattr(c, axis) if axis in AXES else c.extra.get(axis)
            if v is not None and v not in values:
                values.append(v)
        axes[axis] = tuple(values)
    return axes


def build_ledger(
    cells: Sequence[CellResult],
    *,
    axes: dict[str, tuple[str, ...]],
    why: dict[str, str],
    target: TargetInfo,
    run_id: str | None = None,
    timestamp: float | None = None,
    na_skips: Sequence[str] = (),
    partial: str = "",
) -> Ledger:
    run_ids = sorted({c.meta.run_id for c in cells if c.meta is not None})
    # When the run started (its first cell), not when the report was made: history dates runs by it.
    # A cell reused whole from an earlier run keeps that run's start: it says nothing of this one's.
    starts = [c.meta.started for c in cells if c.meta is not None and c.meta.started and not c.meta.cached_from]
    starts = starts or [c.meta.started for c in cells if c.meta is not None and c.meta.started]
    return Ledger(
        run_id=run_id or (",".join(run_ids) if run_ids else "unknown"),
        timestamp=timestamp if timestamp is not None else min(starts, default=time.time()),
        target=target,
        axes=axes,
        cells=tuple(ledger_cell(c) for c in cells),
        tests=ledger_tests(cells, why, na_skips),
        partial=partial,
    )


def target_info(path: str | Path | None, name: str | None = None) -> TargetInfo:
    """The target's path and `git rev-parse HEAD`, when it is a git checkout."""
    if path is None:
        return TargetInfo()
    try:
        proc = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return TargetInfo(name=name, path=str(path))
    revision = proc.stdout.strip() if proc.returncode == 0 else None
    return TargetInfo(name=name, path=str(path), revision=revision or None)


# --------------------------------------------------------------------------
# baseline diff


def read_baseline(path: Path) -> tuple[Ledger | None, str]:
    """(ledger, problem): an unreadable baseline is reported, never fatal."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"baseline {path} unreadable: {exc.strerror}"
    return decode_baseline(data, str(path))


def decode_baseline(data: bytes, name: str) -> tuple[Ledger | None, str]:
    if not data.strip():
        return None, ""
    try:
        return decode(data), ""
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return None, f"baseline {name} is not a readable ledger: {exc}"


def diff(current: Ledger, baseline: Ledger | None, name: str, problem: str = "") -> Diff:
    if baseline is None:
        return Diff(baseline=name, problem=problem or "no baseline")
    if not same_target(current.target, baseline.target):
        return Diff(
            baseline=name,
            problem=f"no baseline: {name} is the table of target {describe_target(baseline.target)}, "
            f"this run is of {describe_target(current.target)}",
        )
    before = {t.nodeid: t.results for t in baseline.tests}
    changes: list[Change] = []
    for test in current.tests:
        old = before.get(test.nodeid, {})
        for cell, result in test.results.items():
            change = _test_change(test.nodeid, cell, old.get(cell), result)
            if change is not None:
                changes.append(change)
    changes.extend(_cell_changes(current, baseline))
    ran = {c.id for c in current.cells}
    now = {(t.nodeid, cell) for t in current.tests for cell in t.results}
    not_run_tests = {t.nodeid for t in baseline.tests for cell in t.results if (t.nodeid, cell) not in now}
    return Diff(
        baseline=name,
        baseline_run_id=baseline.run_id,
        changes=tuple(changes),
        not_run_cells=tuple(sorted(c.id for c in baseline.cells if c.id not in ran)),
        not_run_tests=len(not_run_tests),
    )


def same_target(a: TargetInfo, b: TargetInfo) -> bool:
    """A ledger without a name (older, or no pyproject) matches any: nothing says otherwise."""
    return a.name is None or b.name is None or a.name == b.name


def describe_target(target: TargetInfo) -> str:
    return f"'{target.name}'" if target.name else "unknown"


def _test_change(nodeid: str, cell: str, old: LedgerResult | None, new: LedgerResult) -> Change | None:
    was = old.status if old is not None else None
    now = new.status
    kind = None
    if now == "flaky":
        # Flaky in the baseline too: known, not news every run.
        kind = "flaky" if was != "flaky" else None
    elif now == "xpassed" and new.strict and not (old is not None and old.status == "xpassed" and old.strict):
        kind = "strict-xpass"
    elif now in FAILING and was not in FAILING:
        kind = "new-failure"
    elif (was in FAILING or was in ("xfailed", "xpassed")) and now == "passed":
        # An xfail whose marker went because its cause was fixed is a fix too.
        kind = "fixed"
    elif was == "xfailed" and now == "xpassed":
        kind = "xfail-now-passes"
    elif now == "skipped" and was not in (None, "skipped"):
        kind = "new-skip"
    if kind is None:
        return None
    return Change(kind=kind, cell=cell, nodeid=nodeid, before=was, after=now, reason=new.reason)


def _cell_changes(current: Ledger, baseline: Ledger) -> list[Change]:
    before = {c.id: c.status for c in baseline.cells}
    changes = []
    for c in current.cells:
        was = before.get(c.id)
        if was == c.status:
            continue
        worse = was is not None and _rank(c.status) > _rank(was)
        kind = "cell-worse" if worse else "cell-status"
        changes.append(Change(kind=kind, cell=c.id, before=was, after=c.status, reason=c.reason))
    return changes


def _rank(status: str) -> int:
    """How bad a cell status is (status.CELLS); an unknown one, from a newer ledger, counts as worst."""
    row = CELL.get(status)
    return row.rank if row is not None else max(r.rank for r in CELL.values()) + 1
