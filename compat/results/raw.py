"""A cell's raw directory -> per-test and per-cell statuses: the one reader of raw results.

The runner writes ``reports/raw/<cell-id>/`` (see docs/DESIGN.md, "A cell's
raw output"); this module decides what it says. Reading never raises:
whatever is missing or damaged turns the cell into ``error`` with the reason,
and every test that could still be read is kept.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import msgspec

from ..cell import protocol as P
from ..matrix.cells import parse_cell_id, same_axes
from .events import Events, parse_events, result_from_events
from .evidence import read_dumps, read_hangs, read_leaks
from .files import UNREADABLE, read_optional, read_raw
from .junit import parse_junit
from .schema import CellMeta, CellResult, Leaks, TestResult
from .status import FAILING, CellStatus


def axes_from_id(cell_id: str) -> dict[str, Any]:
    """The axes a cell id names (its extra axes' names are not in it: those need its meta.json)."""
    parsed = parse_cell_id(cell_id)
    if parsed is None:
        return {"python": "?", "group": "?", "backend": "?", "capture": "?", "extra": {}}
    return {
        "python": parsed.python, "group": parsed.group, "backend": parsed.backend, "capture": parsed.capture,
        "extra": {},
    }  # fmt: skip


def read_meta(cell_dir: Path) -> tuple[CellMeta | None, str | None]:
    try:
        data = read_raw(cell_dir / P.META)
    except FileNotFoundError:
        return None, "meta.json is missing (the runner never finished this cell)"
    except OSError as exc:
        return None, f"meta.json unreadable: {exc.strerror}"
    try:
        return msgspec.json.decode(data, type=CellMeta), None
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return None, f"meta.json is damaged: {exc}"


class _Tests(msgspec.Struct):
    tests: dict[str, TestResult]
    running: list[str]
    source: Literal["events", "junit", "none"]
    damage: str | None
    # What pytest collected in this cell (None: it never got that far, or JUnit).
    collected: list[str] | None = None
    finished: bool = True
    notes: list[str] = []
    # A pytest process ended under a test (the target's own doing, or the runner's stop at the per-test
    # bound): its missing finish event hides nothing; the cell resumed after it, or had nothing left.
    died: bool = False
    # New pytest processes the cell started after a stopped or dead one.
    restarts: int = 0
    # What each test left alive that still was at the session's end: (kind, what).
    leaks: dict[str, list[tuple[str, str]]] = {}


class _Reused(msgspec.Struct):
    modules: list[str] = []
    results: dict[str, TestResult] = {}


def read_reused(cell_dir: Path) -> tuple[dict[str, TestResult], str | None]:
    """The results a run took over from earlier ones (runners/incremental.py), each marked with its run."""
    data = read_optional(cell_dir / P.REUSED)
    if data is None:
        return {}, None
    try:
        reused = msgspec.json.decode(data, type=_Reused)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return {}, f"{P.REUSED}: {exc}"
    return {
        n: r if r.reused_from else msgspec.structs.replace(r, reused_from="?") for n, r in reused.results.items()
    }, None


def read_tests(cell_dir: Path) -> _Tests:
    """The cell's tests from events.jsonl, else JUnit, with what hid some of them."""
    events_bytes = read_optional(cell_dir / P.EVENTS)
    events_damage = None
    if events_bytes == UNREADABLE:
        events_damage = f"{P.EVENTS} unreadable"
    elif events_bytes is not None:
        events = parse_events(events_bytes)
        tests = {nodeid: result_from_events(r) for nodeid, r in events.results.items()}
        tests.update(stopped_and_died(events))
        if events.restarts:
            # The ledger says which tests ran in a pytest started after a stopped or dead one.
            tests = {n: msgspec.structs.replace(t, session=events.session_of.get(n, 0)) for n, t in tests.items()}
        for nodeid, items in events.leaks.items():
            if nodeid in tests:
                tests[nodeid] = msgspec.structs.replace(tests[nodeid], leaked=tuple(what for _, what in items))
        reused, reused_damage = read_reused(cell_dir)
        # Taken over from an earlier run, for the modules this one left out (never over a fresh result).
        tests = {**reused, **tests}
        events.damage = events.damage or reused_damage
        running = [n for n in dict.fromkeys(events.started) if n not in tests]
        if tests or running or events.collected is not None:
            return _Tests(
                tests, running, "events", events.damage, events.collected, events.finished, events.notes,
                died=bool(events.died) or events.stopped, restarts=events.restarts, leaks=events.leaks,
            )  # fmt: skip
        events_damage = events.damage
    junit_bytes = read_optional(cell_dir / P.JUNIT)
    if junit_bytes is not None:
        try:
            return _Tests(parse_junit(junit_bytes), [], "junit", events_damage)
        except (ET.ParseError, RecursionError) as exc:
            return _Tests({}, [], "none", f"{P.JUNIT} is damaged: {exc}")
    if events_bytes is not None:
        return _Tests({}, [], "events", events_damage, finished=False)
    return _Tests({}, [], "none", None)


def stopped_and_died(events: Events) -> dict[str, TestResult]:
    """Tests the runner stopped at the per-test bound, and tests under which pytest died."""
    found = {}
    for nodeid, killed in events.killed.items():
        found[nodeid] = TestResult(
            status="timeout",
            reason=f"ran past its {killed.bound:g} s per-test bound: stopped, its processes killed, the cell went on",
            hang=killed.hang,
        )
    for nodeid, died in events.died.items():
        how = f"killed by {died.signal}" if died.signal else f"exited with {died.exitcode}"
        found[nodeid] = TestResult(
            status="error",
            reason=f"pytest {how} during this test (the target's doing)" + (f": {died.cause}" if died.cause else ""),
            when="call",
        )
    return found


def read_cell(cell_dir: Path) -> CellResult:
    """Read one raw cell directory; never raises."""
    cell_id = cell_dir.name
    meta, meta_problem = read_meta(cell_dir)
    if meta is not None and meta.cell != cell_id:
        meta_problem = f"{P.META} names cell {meta.cell}, but it is in the directory of {cell_id}"
    found = read_tests(cell_dir)
    leaks, leak_damage = read_leaks(cell_dir, found.leaks)
    tests = _mark_running(cell_dir, meta, found.tests, found.running)
    tests = _mark_not_run(meta, tests, found.collected)
    cut_short = None
    # A pytest that died under a test is said there (the target's); one that stopped with no word is not.
    completed = meta is not None and meta.outcome == "completed"
    if completed and found.source == "events" and not found.finished and not found.died:
        cut_short = f"{P.EVENTS} ends before pytest's finish event: results after that are missing"
    problem = meta_problem or found.damage or leak_damage or cut_short
    status, reason = cell_status(meta, tests, leaks, found.source, problem)
    axes = same_axes(meta) if meta is not None and not meta_problem else axes_from_id(cell_id)
    notes = tuple(n for n in (meta_problem, found.damage, leak_damage, cut_short, *found.notes) if n)
    return CellResult(
        cell=cell_id, **axes, status=status, reason=reason, meta=meta,
        tests=tests, leaks=leaks, source=found.source, notes=notes, problem=problem,
        hangs=read_hangs(cell_dir), restarts=found.restarts,
    )  # fmt: skip


def _mark_not_run(
    meta: CellMeta | None, tests: dict[str, TestResult], collected: list[str] | None
) -> dict[str, TestResult]:
    """Tests this cell collected and never finished: exactly those, no others (a cell that timed out,
    errored, or stopped early: `-x`, a pytest that died with no restart left)."""
    if meta is None or meta.outcome not in ("timeout", "error", "completed") or not collected:
        return tests
    missing = [n for n in collected if n not in tests]
    if not missing:
        return tests
    not_run = TestResult(status="not-run", reason="never reached: the cell ended early")
    return {**tests, **dict.fromkeys(missing, not_run)}


def _mark_running(
    cell_dir: Path, meta: CellMeta | None, tests: dict[str, TestResult], running: list[str]
) -> dict[str, TestResult]:
    """The test running when the cell's bound expired becomes a timeout."""
    hung = set(running)
    if meta is not None and meta.running:
        hung.add(meta.running)
    if not hung:
        return tests
    timed_out = meta is not None and meta.outcome == "timeout"
    dumps = read_dumps(cell_dir) if timed_out else ""
    bound = meta.limits.timeout_s if meta is not None else None
    tests = dict(tests)
    targets = hung - tests.keys()
    if timed_out and meta is not None and meta.running:
        # Its result, if any, came from the forensics step's SIGINT after the bound expired.
        targets.add(meta.running)
    interrupted = meta is not None and meta.interrupted
    for nodeid in sorted(targets):
        if interrupted:
            tests[nodeid] = TestResult(status="not-run", reason="the run was interrupted while it ran")
        elif timed_out:
            reason = (
                f"still running when the cell's {bound:g} s bound expired"
                if bound
                else ("still running when the cell's bound expired")
            )
            tests[nodeid] = TestResult(status="timeout", reason=reason, message=dumps)
        else:
            tests[nodeid] = TestResult(
                status="error",
                reason="started but never finished: the test process died",
                message=meta.reason if meta is not None else "",
            )
    return tests


def cell_status(
    meta: CellMeta | None,
    tests: dict[str, TestResult],
    leaks: Leaks,
    source: str,
    problem: str | None,
) -> tuple[CellStatus, str]:
    """The one status a cell gets, most serious first."""
    if meta is None:
        return "error", problem or "meta.json is missing"
    match meta.outcome:
        case "unsupported" | "unavailable" | "excluded" | "error":
            return meta.outcome, meta.reason
        case "timeout":
            return "timeout", meta.reason or _timeout_reason(meta)
        case "completed":
            pass
    if problem:
        return "error", problem
    if source == "none":
        return "error", "neither events.jsonl nor junit.xml was written"
    failing = sorted(n for n, t in tests.items() if _breaks_run(t))
    if failing:
        return "failing", f"{len(failing)} failing: {failing[0]}" + (" …" if len(failing) > 1 else "")
    if tests and all(t.status == "skipped" for t in tests.values()):
        return "skipped", _all_skipped(tests)
    if leaks.total:
        return "leaked", _leak_reason(leaks)
    return "ok", ""


def _all_skipped(tests: dict[str, TestResult]) -> str:
    """Nothing was tested: green would be a lie. The most common reason says why."""
    reasons = Counter(t.reason or "no reason given" for t in tests.values())
    reason, n = reasons.most_common(1)[0]
    also = f" (and {len(reasons) - 1} other reason(s))" if len(reasons) > 1 else ""
    return f"no test ran: all {len(tests)} were skipped; {n} because {reason}{also}"


def _breaks_run(test: TestResult) -> bool:
    return test.status in FAILING or (test.status == "xpassed" and test.strict is True)


def _timeout_reason(meta: CellMeta) -> str:
    bound = meta.limits.timeout_s
    where = f" in {meta.running}" if meta.running else ""
    return f"cell bound{f' of {bound:g} s' if bound else ''} expired{where}"


def _leak_reason(leaks: Leaks) -> str:
    return "leaked: " + leaks.summary()


def cell_dirs(raw_dir: Path) -> list[Path]:
    """Cell directories under raw_dir; names starting with '_' are not cells."""
    try:
        return sorted(p for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except OSError:
        return []


def read_cells(raw_dir: Path) -> list[CellResult]:
    return [read_cell(p) for p in cell_dirs(raw_dir)]


def with_tests(cell: CellResult, tests: dict[str, TestResult]) -> CellResult:
    """The cell with its tests replaced and its status decided again."""
    status, reason = cell_status(cell.meta, tests, cell.leaks, cell.source, cell.problem)
    return msgspec.structs.replace(cell, tests=tests, status=status, reason=reason)
