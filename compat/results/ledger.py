"""The results ledger, ``reports/compat.json``: versioned, published as JSON Schema.

The ledger is the one document every view (Markdown, HTML, job summary) and
the next run's baseline diff are made from.  New fields get defaults so an
older ledger still decodes as a baseline.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import msgspec

from ..matrix import AXES
from .raw import FAILING, CellResult, CellStatus, Leaks, TestResult, TestStatus

SCHEMA_VERSION = 1
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


class LedgerCell(_Base, frozen=True, kw_only=True):
    id: str
    python: str
    group: str
    backend: str
    capture: str
    extra: dict[str, str] = {}
    status: CellStatus
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


class LedgerResult(_Base, frozen=True):
    """A test's result in one cell (cell ids are the keys)."""

    status: TestStatus
    reason: str = ""
    message: str = ""
    when: str | None = None
    strict: bool | None = None
    duration_s: float | None = None


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

    def of(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def regressions(self) -> list[Change]:
        return self.of("new-failure")


DIFF_KINDS = {
    "new-failure": "New failures",
    "fixed": "Fixed",
    "xfail-now-passes": "Xfails that now pass",
    "new-skip": "New skips",
    "flaky": "Flaky",
    "cell-status": "Cells whose status changed",
}


class Ledger(_Base, frozen=True, kw_only=True):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    timestamp: float
    target: TargetInfo = TargetInfo()
    axes: dict[str, tuple[str, ...]]
    cells: tuple[LedgerCell, ...]
    tests: tuple[LedgerTest, ...]
    diff: Diff | None = None


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
        python=cell.python,
        group=cell.group,
        backend=cell.backend,
        capture=cell.capture,
        extra=dict(cell.extra),
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
    )


def _ledger_result(t: TestResult) -> LedgerResult:
    return LedgerResult(
        status=t.status,
        reason=t.reason,
        message=t.message,
        when=t.when,
        strict=t.strict,
        duration_s=t.duration_s,
    )


def ledger_tests(cells: Sequence[CellResult], why: dict[str, str]) -> tuple[LedgerTest, ...]:
    """Each test with its result in every cell that has one (a cell that ended
    early already holds `not-run` for exactly what it collected and never ran)."""
    nodeids = sorted({n for c in cells for n in c.tests})
    return tuple(
        LedgerTest(
            nodeid=nodeid,
            results={c.cell: _ledger_result(t) for c in cells if (t := c.tests.get(nodeid)) is not None},
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
) -> Ledger:
    run_ids = sorted({c.meta.run_id for c in cells if c.meta is not None})
    return Ledger(
        run_id=run_id or (",".join(run_ids) if run_ids else "unknown"),
        timestamp=timestamp if timestamp is not None else time.time(),
        target=target,
        axes=axes,
        cells=tuple(ledger_cell(c) for c in cells),
        tests=ledger_tests(cells, why),
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
    before = {t.nodeid: t.results for t in baseline.tests}
    changes: list[Change] = []
    for test in current.tests:
        old = before.get(test.nodeid, {})
        for cell, result in test.results.items():
            change = _test_change(test.nodeid, cell, old.get(cell), result)
            if change is not None:
                changes.append(change)
    changes.extend(_cell_changes(current, baseline))
    return Diff(baseline=name, baseline_run_id=baseline.run_id, changes=tuple(changes))


def _test_change(nodeid: str, cell: str, old: LedgerResult | None, new: LedgerResult) -> Change | None:
    was = old.status if old is not None else None
    now = new.status
    kind = None
    if now == "flaky":
        kind = "flaky"
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
    return [
        Change(kind="cell-status", cell=c.id, before=before.get(c.id), after=c.status, reason=c.reason)
        for c in current.cells
        if before.get(c.id) != c.status
    ]
