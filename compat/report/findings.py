"""What the table says, before it is drawn: counts, problems with a compact "where", folded skips.

Markdown, HTML and the job summary all draw these, so they can never
disagree about what is a problem, what is n/a and where a test fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..matrix import AXES
from ..results.ledger import Ledger, LedgerCell, LedgerResult, LedgerTest
from ..results.schema import Hang
from ..results.status import CELL, NA_CELLS, PROBLEM_TESTS, row_of
from .history import History

WHERE_IDS = 4
# Cells that are not ok for a reason of their own, not only their tests' (those show as findings).
CELL_PROBLEMS_OF_THEIR_OWN = frozenset({"error", "timeout", "skipped"})


def axis_value(cell: LedgerCell, axis: str) -> str:
    return str(getattr(cell, axis)) if axis in AXES else cell.extra.get(axis, "")


def where(chosen: Iterable[LedgerCell], universe: Sequence[LedgerCell], axes: dict[str, tuple[str, ...]]) -> str:
    """``3.14 · every group · subint · fd``: the chosen cells as one value set per axis, when they are exactly
    that product within ``universe``; otherwise their count and first ids."""
    chosen = list(chosen)
    ids = {c.id for c in chosen}
    if len(chosen) > 1 and ids == {c.id for c in universe}:
        return "every cell"
    parts, value_sets = [], {}
    for axis, declared in axes.items():
        present = [v for v in declared if any(axis_value(c, axis) == v for c in universe)]
        values = [v for v in present if any(axis_value(c, axis) == v for c in chosen)]
        value_sets[axis] = set(values)
        if len(present) <= 1:
            continue
        parts.append(f"every {axis}" if len(values) == len(present) else "/".join(values))
    product = [c for c in universe if all(axis_value(c, a) in vs for a, vs in value_sets.items())]
    if len(product) == len(chosen) and parts:
        return " · ".join(parts)
    shown = ", ".join(sorted(ids)[:WHERE_IDS])
    return f"{len(chosen)} cells: {shown}" + (" …" if len(ids) > WHERE_IDS else "")


@dataclass(frozen=True)
class Overview:
    """The first line: cells by what they mean, and tests failing somewhere."""

    cells: int
    by_status: dict[str, int]
    na: int
    failing_tests: int
    cached: int
    not_run_cells: int
    not_run_tests: int
    # Test results cells took over from earlier runs (runners/incremental.py).
    reused: int = 0

    @property
    def ok(self) -> int:
        return self.by_status.get("ok", 0)


def overview(ledger: Ledger) -> Overview:
    by_status: dict[str, int] = {}
    for c in ledger.cells:
        by_status[c.status] = by_status.get(c.status, 0) + 1
    diff = ledger.diff
    return Overview(
        cells=len(ledger.cells),
        by_status=by_status,
        na=sum(n for s, n in by_status.items() if s in NA_CELLS),
        failing_tests=sum(1 for t in ledger.tests if any(is_problem(r) for r in t.results.values())),
        cached=sum(1 for c in ledger.cells if c.cached_from),
        reused=sum(c.reused for c in ledger.cells if not c.cached_from),
        not_run_cells=len(diff.not_run_cells) if diff else 0,
        not_run_tests=diff.not_run_tests if diff else 0,
    )


def is_problem(r: LedgerResult) -> bool:
    """A result the problem list shows: failing, flaky, or an xpass under a strict marker."""
    return row_of(r.status, strict=r.strict).problem


@dataclass(frozen=True)
class Finding:
    """One test with one status in some cells: where, why, and how to reproduce it."""

    nodeid: str
    status: str
    cells: tuple[str, ...]
    where: str
    reason: str
    why: str = ""
    history: str = ""
    # An xpass under a strict marker (a problem), or not (an expected failure that passed).
    strict: bool = False
    # A timeout's hangs (class, where it was stuck, the evidence): (cell, hang), the first cell of each class.
    hangs: tuple[tuple[str, Hang], ...] = ()

    @property
    def verb(self) -> str:
        return row_of(self.status, strict=self.strict).verb or self.status


def ran(ledger: Ledger) -> list[LedgerCell]:
    """The cells that ran tests: what a "where" is said against (n/a cells ran nothing)."""
    return [c for c in ledger.cells if c.counts]


def test_where(ledger: Ledger, test: LedgerTest, hits: Sequence[str], universe: Sequence[LedgerCell]) -> str:
    """Where a test had a status, said against every cell that ran tests; a test that exists only in
    some of them (another backend's parametrisation) and has it in all of those says so."""
    cells = {c.id: c for c in universe}
    text = where([cells[c] for c in hits if c in cells], universe, ledger.axes)
    if set(hits) == set(test.results) and len(hits) < len(universe) and text != "every cell":
        text += " (every cell that ran it)"
    return text


def _findings(
    ledger: Ledger,
    statuses: Sequence[str],
    include: Callable[[LedgerResult], bool],
    history: History | None = None,
) -> list[Finding]:
    universe = ran(ledger)
    found = []
    for test in ledger.tests:
        for status in statuses:
            hits = [cid for cid, r in test.results.items() if r.status == status and include(r)]
            if not hits:
                continue
            found.append(
                Finding(
                    nodeid=test.nodeid,
                    status=status,
                    cells=tuple(hits),
                    where=test_where(ledger, test, hits, universe),
                    reason=_common_reason(test, hits),
                    why=test.why,
                    history=history.describe(test.nodeid, hits) if history is not None else "",
                    strict=all(test.results[c].strict for c in hits),
                    **_hang_of(ledger, test.nodeid, hits) if status == "timeout" else {},
                )
            )
    return found


def _hang_of(ledger: Ledger, nodeid: str, hits: Sequence[str]) -> dict[str, Any]:
    """One hang per class the test was in: a test that hangs differently in two cells says so."""
    cells = {c.id: c for c in ledger.cells}
    found: dict[str, tuple[str, Hang]] = {}
    for cid in hits:
        for hang in cells[cid].hangs if cid in cells else ():
            if hang.nodeid == nodeid:
                found.setdefault(hang.kind, (cid, hang))
    return {"hangs": tuple(found.values())} if found else {}


def problems(ledger: Ledger, history: History | None = None) -> list[Finding]:
    """Tests that fail, error, time out, are flaky or strictly xpass, worst first."""
    found = _findings(ledger, PROBLEM_TESTS, is_problem, history)
    return sorted(found, key=lambda f: (-row_of(f.status, strict=f.strict).rank, f.nodeid))


def expected_failures(ledger: Ledger) -> list[Finding]:
    """xfails, and xpasses that are not strict (those are problems)."""
    found = _findings(ledger, ("xfailed", "xpassed"), lambda r: not is_problem(r))
    return sorted(found, key=lambda f: (f.nodeid, f.status))


def _common_reason(test: LedgerTest, cells: Sequence[str]) -> str:
    seen: dict[str, int] = {}
    for cid in cells:
        reason = test.results[cid].reason
        if reason:
            seen[reason] = seen.get(reason, 0) + 1
    return max(seen, key=lambda k: seen[k]) if seen else ""


@dataclass(frozen=True)
class Folded:
    """Results (or cells) sharing one reason: a count, and where."""

    reason: str
    count: int
    where: str


def skips(ledger: Ledger, status: str = "skipped") -> list[Folded]:
    """Skipped (or n/a) results grouped by reason, most common first."""
    cells = {c.id: c for c in ledger.cells}
    by_reason: dict[str, list[str]] = {}
    for test in ledger.tests:
        for cid, r in test.results.items():
            if r.status == status:
                by_reason.setdefault(r.reason or "(no reason given)", []).append(cid)
    folded = [
        Folded(
            reason,
            len(hits),
            where([cells[c] for c in dict.fromkeys(hits) if c in cells], ran(ledger), ledger.axes),
        )
        for reason, hits in by_reason.items()
    ]
    return sorted(folded, key=lambda f: (-f.count, f.reason))


def na_cells(ledger: Ledger) -> list[Folded]:
    """Cells that do not apply, grouped by reason."""
    by_reason: dict[str, list[LedgerCell]] = {}
    for c in ledger.cells:
        if c.status in NA_CELLS:
            by_reason.setdefault(c.reason or c.status, []).append(c)
    return [
        Folded(reason, len(cs), where(cs, list(ledger.cells), ledger.axes))
        for reason, cs in sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    ]


@dataclass(frozen=True)
class FoldedSection:
    """One folded block of the report: its summary line, and a line per reason."""

    summary: str
    unit: str
    items: list[Folded]


def folded_sections(ledger: Ledger) -> list[FoldedSection]:
    """The n/a cells, the n/a results and the skips, each grouped by reason; empty ones left out."""
    skipped, na_tests, na = skips(ledger), skips(ledger, "n/a"), na_cells(ledger)
    sections = [
        FoldedSection(f"{sum(f.count for f in na)} cell(s) n/a", "cell(s)", na),
        FoldedSection(
            f"{sum(f.count for f in na_tests)} result(s) n/a: another backend's suite", "result(s)", na_tests
        ),
        FoldedSection(f"{sum(f.count for f in skipped)} skip(s), {len(skipped)} reason(s)", "skip(s)", skipped),
    ]
    return [section for section in sections if section.items]


def problem_cells(ledger: Ledger) -> list[LedgerCell]:
    """Cells that are not ok for a reason of their own (not only failing tests), worst first."""
    bad = [c for c in ledger.cells if c.status in CELL_PROBLEMS_OF_THEIR_OWN]
    return sorted(bad, key=lambda c: (-CELL[c.status].rank, c.id))


def leaky_cells(ledger: Ledger) -> list[LedgerCell]:
    """Every cell that leaked, whatever its status says first (a failing cell can leak too)."""
    return [c for c in ledger.cells if c.leaks.total]


@dataclass(frozen=True)
class Environment:
    """What the cells ran with, said once where it agrees: CPython, the packages that matter, times."""

    pythons: list[tuple[str, int]]  # (exact version, cells)
    same: list[tuple[str, str]]  # (package, version) the same in every cell that has it
    differ: list[tuple[str, list[tuple[str, int]]]]  # (package, [(version, cells)])
    cell_seconds: float
    pytest_seconds: float
    slowest_cell: tuple[str, float] | None
    slowest_tests: list[tuple[float, str, str]]  # (seconds, nodeid, cell)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def environment(ledger: Ledger, slowest: int = 5) -> Environment:
    ran = [c for c in ledger.cells if c.environment.python_version]
    pythons: dict[str, int] = {}
    versions: dict[str, dict[str, int]] = {}
    wanted = set(ledger.key_packages)
    for c in ran:
        pythons[c.environment.python_version or "?"] = pythons.get(c.environment.python_version or "?", 0) + 1
        for name, version in c.environment.packages.items():
            if canonical(name) in wanted:
                versions.setdefault(canonical(name), {}).setdefault(version, 0)
                versions[canonical(name)][version] += 1
    # One version in every cell: said once; anything else with the cells that have each version.
    same = sorted((n, next(iter(v))) for n, v in versions.items() if len(v) == 1 and sum(v.values()) == len(ran))
    differ = sorted((n, sorted(v.items())) for n, v in versions.items() if (n, next(iter(v))) not in same)
    timed = [(c.id, c.durations.cell_s) for c in ledger.cells if c.durations.cell_s]
    tests = sorted(
        ((r.duration_s, t.nodeid, cid) for t in ledger.tests for cid, r in t.results.items() if r.duration_s),
        reverse=True,
    )
    return Environment(
        pythons=sorted(pythons.items()),
        same=same,
        differ=differ,
        cell_seconds=round(sum(s for _, s in timed if s), 1),
        pytest_seconds=round(sum(c.durations.pytest_s or 0.0 for c in ledger.cells), 1),
        slowest_cell=max(timed, key=lambda x: x[1] or 0.0) if timed else None,
        slowest_tests=[(round(s, 2), n, c) for s, n, c in tests[:slowest]],
    )
