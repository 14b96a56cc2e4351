"""What the Markdown, HTML and job-summary views share: layout, symbols, words."""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..matrix import AXES
from ..results.ledger import Ledger, LedgerCell, LedgerTest
from ..results.status import FAILING

ABSENT = "·"


DECIDED = [
    "Per-test outcomes come from `events.jsonl`, streamed by the `compat.cell.plugin` pytest plugin as each "
    "test ends, so xfail, xpass (and its strictness) and skip stay distinct. When a cell has no readable "
    "events the JUnit XML is used instead (it cannot tell xpass from pass).",
    "A test with a `start` event and no result was running when the cell ended: `timeout` when the runner's "
    "bound expired (the hang dumps are attached), otherwise `error`.",
    "A test seen in any other cell but absent from a cell that timed out or errored is `not-run`; absent from a "
    "cell that completed, it was not collected there (`·`).",
    "A test is `flaky` when it failed and then passed on a re-run in the same cell (pytest re-run reports or "
    "`compat triage`).",
    "The cell status is the most serious of: `error` (runner outcome or a missing/damaged `meta.json`, "
    "events or JUnit) > `unsupported`/`unavailable` (runner outcome, with the gate's reason) > `timeout` > "
    "`failing` > `leaked` (`reap.json`/`census.json` non-empty) > `ok`.",
    "The *why* column names the single axis (python, group, backend, capture) on whose value alone the "
    "test's pass/fail depends, confirmed by two cells that differ only in that axis; `compat triage` re-runs "
    "the test in missing neighbouring cells. Otherwise it says the explanation is ambiguous, unconfirmed, or "
    "that no single axis explains it.",
]


# python, group, capture, then the values of the target's own axes.
Column = tuple[str, ...]


@dataclass(frozen=True)
class Layout:
    """Backends as rows, python x group x capture (x the target's axes) as columns."""

    backends: tuple[str, ...]
    columns: tuple[Column, ...]
    cells: dict[tuple[str, Column], LedgerCell]

    def cell(self, backend: str, column: Column) -> LedgerCell | None:
        return self.cells.get((backend, column))

    def backend_cells(self, backend: str) -> list[tuple[Column, LedgerCell]]:
        return [(col, c) for col in self.columns if (c := self.cell(backend, col)) is not None]


def column_of(cell: LedgerCell, extra_axes: Sequence[str]) -> Column:
    return (cell.python, cell.group, cell.capture, *(cell.extra.get(a, "") for a in extra_axes))


def layout(ledger: Ledger) -> Layout:
    ax = ledger.axes
    extra_axes = [a for a in ax if a not in AXES]
    cells = {(c.backend, column_of(c, extra_axes)): c for c in ledger.cells}
    present_cols = {col for _, col in cells}
    present_backends = {b for b, _ in cells}
    order = [ax.get("python", ()), ax.get("group", ()), ax.get("capture", ()), *(ax[a] for a in extra_axes)]
    columns = tuple(col for col in itertools.product(*order) if col in present_cols)
    backends = tuple(b for b in ax.get("backend", ()) if b in present_backends)
    return Layout(backends, columns, cells)


@dataclass(frozen=True)
class GridLayout:
    """The summary grid: python x group (x the target's axes) as rows, backend x capture as columns.

    Rows grow with the matrix; columns stay few, so the grid fits a page.
    """

    rows: tuple[tuple[str, ...], ...]
    columns: tuple[tuple[str, str], ...]
    cells: dict[tuple[tuple[str, ...], tuple[str, str]], LedgerCell]
    # cell id -> the tests failing there (failed, error, timeout, strict xpass), for the grid's marks.
    failing: dict[str, list[str]] = field(default_factory=dict)
    # Cells come from more than one run: each one's run is worth saying.
    folded: bool = False

    def cell(self, row: tuple[str, ...], col: tuple[str, str]) -> LedgerCell | None:
        return self.cells.get((row, col))

    def title(self, cell: LedgerCell) -> str:
        """A grid mark's hover text: its counts, the failing tests by name, and its run when folded."""
        text = counts_title(cell)
        failing = self.failing.get(cell.id, [])
        if failing:
            text += "; failing: " + ", ".join(failing[:FAILING_NAMED]) + (" …" if len(failing) > FAILING_NAMED else "")
        if self.folded and cell.run_id:
            text += f"; from run {cell.run_id}"
        if cell.stale:
            text += "; stale: the target's files changed since"
        return text

    def count(self, cell: LedgerCell) -> str:
        """How many tests fail there, beside the mark (nothing for none)."""
        n = len(self.failing.get(cell.id, []))
        return f" {n}" if n else ""


FAILING_NAMED = 5


def grid_layout(ledger: Ledger) -> GridLayout:
    ax = ledger.axes
    extra_axes = [a for a in ax if a not in AXES]

    def row_of(c: LedgerCell) -> tuple[str, ...]:
        return (c.python, c.group, *(c.extra.get(a, "") for a in extra_axes))

    cells = {(row_of(c), (c.backend, c.capture)): c for c in ledger.cells}
    failing: dict[str, list[str]] = {}
    for test in ledger.tests:
        for cid, r in test.results.items():
            if r.status in FAILING or (r.status == "xpassed" and r.strict):
                failing.setdefault(cid, []).append(test.nodeid)
    folded = len({c.run_id for c in ledger.cells if c.run_id}) > 1
    present_rows = {r for r, _ in cells}
    present_cols = {col for _, col in cells}
    row_order = [ax.get("python", ()), ax.get("group", ()), *(ax[a] for a in extra_axes)]
    rows = tuple(r for r in itertools.product(*row_order) if r in present_rows)
    cols = tuple(c for c in itertools.product(ax.get("backend", ()), ax.get("capture", ())) if c in present_cols)
    return GridLayout(rows, cols, cells, failing, folded)


def title(ledger: Ledger) -> str:
    """``Compatibility: wirekit @ 3690e43``: the target, never a machine's path."""
    target = ledger.target
    name = target.name or (target.path.rstrip("/").rsplit("/", 1)[-1] if target.path else None)
    text = f"Compatibility: {name}" if name else "Compatibility"
    return text + (f" @ {target.revision[:12]}" if target.revision else "")


def column_label(col: Column, sep: str = " ") -> str:
    return sep.join(col)


def counts_title(cell: LedgerCell) -> str:
    c = cell.counts
    parts = [
        f"{c.get('passed', 0)} passed",
        f"{c.get('xfailed', 0)} xfail",
        f"{c.get('skipped', 0)} skip",
        f"{c.get('failed', 0)} fail",
    ]
    for status, word in (
        ("error", "error"),
        ("timeout", "timeout"),
        ("xpassed", "xpass"),
        ("flaky", "flaky"),
        ("not-run", "not run"),
    ):
        if c.get(status):
            parts.append(f"{c[status]} {word}")
    if c.get("n/a"):
        parts.append(f"{c['n/a']} n/a")
    text = " / ".join(parts)
    if cell.status != "ok":
        text = f"{cell.status}: {text}"
    if cell.status not in ("ok", "failing") and cell.reason:
        # The failing tests are listed below the grid; a cell's own reason is not.
        text += " — " + (cell.reason if len(cell.reason) <= 100 else cell.reason[:99] + "…")
    if cell.leaks.total and cell.status != "leaked":
        text += f"; also leaked ({cell.leaks.total})"
    if cell.cached_from:
        text += f"; cached from run {cell.cached_from}"
    elif cell.reused:
        text += f"; {cell.reused} result(s) reused from run {', '.join(cell.reused_from)}"
    return text


def reasons(test: LedgerTest, cell_ids: set[str]) -> list[str]:
    """Distinct reasons, most common first."""
    seen: dict[str, int] = {}
    for cid, r in test.results.items():
        if cid in cell_ids and r.reason and r.status != "passed":
            seen[r.reason] = seen.get(r.reason, 0) + 1
    return sorted(seen, key=lambda k: -seen[k])


def when(ledger: Ledger) -> str:
    return datetime.datetime.fromtimestamp(ledger.timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def heading(ledger: Ledger) -> str:
    target = ledger.target
    name = target.name or (target.path.rstrip("/").rsplit("/", 1)[-1] if target.path else None)
    where = f"target `{name}`" if name else "target unknown"
    if target.revision:
        where += f" @ `{target.revision[:12]}`"
    return f"Run `{ledger.run_id}` · {when(ledger)} · {where} · {len(ledger.cells)} cells · {len(ledger.tests)} tests"


class KnownIssues:
    """docs/known-issues/<slug>.md, linked wherever a reason names the slug."""

    def __init__(self, directory: Path | None, link_base: str = "", raw_base: str = "raw/") -> None:
        # Where the cells' raw directories are, relative to the report (hang evidence is linked there).
        self.raw = raw_base
        self.slugs: dict[str, str] = {}
        if directory is not None and directory.is_dir():
            for path in sorted(directory.glob("*.md")):
                self.slugs[path.stem] = f"{link_base}{path.name}"
        self._pattern = (
            re.compile(
                r"(?<![\w/-])(?:(?:docs/)?known-issues/)?("
                + "|".join(map(re.escape, self.slugs))
                + r")(?:\.md)?(?![\w-])"
            )
            if self.slugs
            else None
        )

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, href) of every mention."""
        if self._pattern is None:
            return []
        return [(m.start(), m.end(), self.slugs[m.group(1)]) for m in self._pattern.finditer(text)]

    def link(self, text: str, render: Callable[[str, str], str], escape: Callable[[str], str]) -> str:
        out, pos = [], 0
        for start, end, href in self.find(text):
            out.append(escape(text[pos:start]))
            out.append(render(text[start:end], href))
            pos = end
        out.append(escape(text[pos:]))
        return "".join(out)
