"""COMPATIBILITY.md and the GitHub job summary, from a ledger.

Laid out for GitHub's ~1,012 px column: one summary grid (python x group
rows, backend x capture columns), then lists rather than wide tables, so a
long node id or reason wraps instead of pushing columns off-screen. Skips
by design and n/a results are folded into ``<details>``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

from ..cell import protocol as P
from ..paths import repro_command
from ..results.ledger import DIFF_KINDS, REGRESSIONS, Diff, Ledger
from ..results.schema import Hang
from ..results.status import CELL, CELLS, STRICT_XPASS, TESTS, row_of
from .findings import (
    Finding,
    Overview,
    environment,
    expected_failures,
    folded_sections,
    leaky_cells,
    overview,
    problem_cells,
    problems,
)
from .history import History
from .view import (
    ABSENT,
    GridLayout,
    KnownIssues,
    grid_layout,
    heading,
    title,
)

LEAK_SYMBOL = CELL["leaked"].emoji
SUMMARY_LIMIT = 1024 * 1024
SUMMARY_BUDGET = SUMMARY_LIMIT - 16 * 1024  # room for the truncation note
DIFF_ITEMS = 50
LIST_ITEMS = 100
_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def md_text(text: str) -> str:
    """Plain text safe anywhere in Markdown, table cells included: one line, no markup, no raw HTML."""
    text = re.sub(r"\s+", " ", text)  # one line; spaces at the ends matter between linked pieces
    return _SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def md_code(text: str) -> str:
    """A code span holding ``text`` exactly, even with backticks or pipes in it."""
    text = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    # Inside a table a pipe ends the cell even in a code span; GitHub drops the backslash.
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def _md_link(text: str, href: str) -> str:
    return f"[{md_text(text)}]({href})"


def linked(text: str, known: KnownIssues) -> str:
    return known.link(text, _md_link, md_text)


def title_span(symbol: str, text: str) -> str:
    # `|` ends a table cell even inside an HTML attribute: it goes as an entity.
    return f'<span title="{html.escape(text, quote=True).replace("|", "&#124;")}">{symbol}</span>'


# --------------------------------------------------------------------------
# pieces, each yielding lines


def counts_line(o: Overview) -> str:
    parts = [f"**{o.ok} of {o.cells} cells ok**"]
    parts += [f"{o.by_status.get(s, 0)} {s}" for s in ("failing", "timeout", "leaked", "error")]
    parts.append(f"{o.na} n/a")
    line = " · ".join(parts) + f" — **{o.failing_tests} test(s) failing somewhere**"
    if o.not_run_cells or o.not_run_tests:
        line += f" · not run in this run: {o.not_run_cells} cell(s), {o.not_run_tests} test(s) of the baseline"
    if o.cached:
        line += f" · {o.cached} cell(s) cached (inputs unchanged)"
    if o.reused:
        line += f" · {o.reused} test result(s) reused (their modules unchanged)"
    return line


def partial_lines(ledger: Ledger) -> Iterator[str]:
    if ledger.partial:
        yield f"> **Partial run:** {md_text(ledger.partial)}. Counts cover only what ran."
        yield ""
    yield from folded_run_lines(ledger)


def folded_run_lines(ledger: Ledger) -> Iterator[str]:
    """Which runs a table folds together, and which of its cells an edit has made stale."""
    by_run: dict[str, int] = {}
    for c in ledger.cells:
        if c.run_id:
            by_run[c.run_id] = by_run.get(c.run_id, 0) + 1
    if len(by_run) > 1:
        runs = ", ".join(f"{n} from {md_code(r)}" for r, n in sorted(by_run.items()))
        yield f"> **Folded:** each cell's newest result since the last full run: {runs}."
        yield ""
    stale = [c.id for c in ledger.cells if c.stale]
    if stale:
        shown = ", ".join(md_code(c) for c in stale[:8]) + (" …" if len(stale) > 8 else "")
        yield (
            f"> **Stale:** {len(stale)} cell(s) ran before the target's files last changed: {shown}; "
            "`compat run` brings them up to date (only what the change can affect runs)."
        )
        yield ""


def grid_lines(grid: GridLayout) -> Iterator[str]:
    yield "| | " + " | ".join(f"{b}<br>{c}" for b, c in grid.columns) + " |"
    yield "|---|" + "|".join(":-:" for _ in grid.columns) + "|"
    for row in grid.rows:
        symbols = []
        for col in grid.columns:
            cell = grid.cell(row, col)
            if cell is None:
                symbols.append(ABSENT)
                continue
            leak = LEAK_SYMBOL if cell.leaks.total and cell.status != "leaked" else ""
            symbol = CELL[cell.status].emoji + leak + grid.count(cell)
            symbols.append(title_span(symbol, grid.title(cell)))
        yield f"| **{' '.join(row)}** | " + " | ".join(symbols) + " |"


def finding_lines(f: Finding, known: KnownIssues, invocation: str) -> Iterator[str]:
    symbol = row_of(f.status, strict=f.strict).emoji
    line = f"- {symbol} {md_code(f.nodeid)} **{f.verb}** in {md_text(f.where)}"
    if f.reason:
        line += f" — {linked(f.reason, known)}"
    if f.why:
        line += f" _(why: {md_text(f.why)})_"
    yield line
    extra = []
    if f.history:
        extra.append(md_text(f.history))
    extra.append("repro: " + md_code(repro_command(f.cells[0], f.nodeid, invocation)))
    yield "  <br>" + " · ".join(extra)
    for cell, hang in f.hangs:
        yield from hang_lines(hang, cell, known, name_cell=len(f.hangs) > 1 or len(f.cells) > 1)


def problem_lines(ledger: Ledger, known: KnownIssues, history: History | None, invocation: str) -> Iterator[str]:
    found = problems(ledger, history)
    bad_cells = problem_cells(ledger)
    leaks = leaky_cells(ledger)
    yield "## Failing, timing out, flaky, leaking"
    yield ""
    if not (found or bad_cells or leaks):
        yield "Nothing fails, times out, is flaky or leaks."
        yield ""
        return
    for f in found[:LIST_ITEMS]:
        yield from finding_lines(f, known, invocation)
    if len(found) > LIST_ITEMS:
        yield f"- … and {len(found) - LIST_ITEMS} more (see compat.json or index.html)"
    if bad_cells:
        yield ""
        yield "Cells that did not finish cleanly:"
        yield ""
        for c in bad_cells:
            yield f"- {CELL[c.status].emoji} {md_code(c.id)} **{c.status}**" + (
                f": {linked(c.reason, known)}" if c.reason else ""
            )
            yield from hang_lines(next((h for h in c.hangs if h.bound == "per-cell"), None), c.id, known)
    if leaks:
        yield ""
        yield "Leaks (whatever else the cell did):"
        yield ""
        for c in leaks:
            detail = "; ".join(c.leaks.details[:3])
            yield f"- {LEAK_SYMBOL} {md_code(c.id)}: {c.leaks.summary()}" + (f" — {md_text(detail)}" if detail else "")
    yield ""


def hang_lines(hang: Hang | None, cell: str, known: KnownIssues, *, name_cell: bool = False) -> Iterator[str]:
    """A hang's class, what it was stuck on (task, and frame per process and interpreter), and the evidence.

    ``name_cell``: name the cell (a test that timed out in several)."""
    if hang is None:
        return
    yield f"  <br>hang{f' in {md_code(cell)}' if name_cell else ''}: **{hang.kind}** — {md_text(hang.detail)}"
    if hang.child:
        yield f"  <br>its child: {md_text(hang.child)}"
    for task in hang.stuck[:3]:
        yield f"  <br>stuck: {md_code(task)}"
    for where in hang.frames[:4]:
        interp = f", interpreter {where.interpreter}" if where.interpreter else ""
        gil = ", holding the GIL" if where.gil else ""
        yield f"  <br>pid {where.pid} {md_text(where.thread)}{interp}{gil}: {md_code(where.frame)}"
    if hang.stacks_problem and not hang.frames:
        yield f"  <br>stacks: {md_text(hang.stacks_problem)}"
    stacks = [
        f for f in hang.files
        if f.endswith((P.STACKS_TEXT, P.FORENSICS)) or f.rsplit("/", 1)[-1].startswith(P.TARGET_DUMP_PREFIX)
    ]  # fmt: skip
    if stacks:
        yield "  <br>evidence: " + ", ".join(md_code(f"{known.raw}{cell}/{f}") for f in stacks)


def diff_lines(diff: Diff | None, limit: int = DIFF_ITEMS) -> Iterator[str]:
    if diff is None:
        return
    yield "## Changes since the last published report"
    yield ""
    if diff.problem:
        yield f"_{md_text(diff.problem)}_"
        yield ""
        return
    yield f"Baseline: {md_code(diff.baseline)} (run {md_code(str(diff.baseline_run_id))})."
    yield ""
    if diff.not_run_cells or diff.not_run_tests:
        cells = ", ".join(md_code(c) for c in diff.not_run_cells[:8]) + (" …" if len(diff.not_run_cells) > 8 else "")
        yield (
            f"**Not run in this run:** {len(diff.not_run_cells)} cell(s) of the baseline"
            + (f" ({cells})" if cells else "")
            + f" and {diff.not_run_tests} test(s) of the baseline: their results are unknown here, not unchanged."
        )
        yield ""
    if not diff.changes:
        yield "No changes in what ran." if diff.not_run_cells or diff.not_run_tests else "No changes."
        yield ""
        return
    for kind, heading_text in DIFF_KINDS.items():
        items = diff.of(kind)
        if not items:
            continue
        yield f"**{heading_text} ({len(items)})**" + (" — regression" if kind in REGRESSIONS else "")
        yield ""
        for c in items[:limit]:
            what = f"{md_code(c.nodeid)} in " if c.nodeid else ""
            yield f"- {what}{md_code(c.cell)}: {c.before or 'absent'} → {c.after}" + (
                f" — {md_text(c.reason)}" if c.reason else ""
            )
        if len(items) > limit:
            yield f"- … and {len(items) - limit} more (see compat.json)"
        yield ""


def expected_lines(ledger: Ledger, known: KnownIssues) -> Iterator[str]:
    found = expected_failures(ledger)
    if not found:
        return
    yield "## Expected failures"
    yield ""
    for f in found[:LIST_ITEMS]:
        line = f"- {row_of(f.status, strict=f.strict).emoji} {md_code(f.nodeid)} **{f.verb}** in {md_text(f.where)}"
        yield line + (f" — {linked(f.reason, known)}" if f.reason else "")
    if len(found) > LIST_ITEMS:
        yield f"- … and {len(found) - LIST_ITEMS} more (see compat.json or index.html)"
    yield ""


def folded_lines(ledger: Ledger, known: KnownIssues) -> Iterator[str]:
    sections = folded_sections(ledger)
    if not sections:
        return
    yield "## Skips and n/a"
    yield ""
    for section in sections:
        yield f"<details><summary>{html.escape(section.summary)}</summary>"
        yield ""
        for f in section.items[:LIST_ITEMS]:
            yield f"- {f.count} {section.unit}: {linked(f.reason, known)} — {md_text(f.where)}"
        yield ""
        yield "</details>"
        yield ""


def environment_lines(ledger: Ledger) -> Iterator[str]:
    env = environment(ledger)
    if not env.pythons:
        return
    yield "## What ran"
    yield ""
    yield "- CPython " + ", ".join(f"{v} ({n} cell{'s' * (n != 1)})" for v, n in env.pythons)
    if env.same:
        yield "- in every cell: " + ", ".join(f"{n} {v}" for n, v in env.same)
    for name, versions in env.differ:
        yield f"- {name}: " + ", ".join(f"{v} ({n} cell{'s' * (n != 1)})" for v, n in versions)
    if env.slowest_cell is not None:
        cell, seconds = env.slowest_cell
        yield (
            f"- time: {env.cell_seconds:g} s in cells, {env.pytest_seconds:g} s of it in pytest; "
            f"the slowest cell {md_code(cell)} {seconds:.1f} s"
        )
    if env.slowest_tests:
        yield "- slowest tests: " + "; ".join(f"{s:g} s {md_code(n)} in {md_code(c)}" for s, n, c in env.slowest_tests)
    yield ""


def legend_lines() -> Iterator[str]:
    yield "## Legend"
    yield ""
    yield (
        "Cells: "
        + ", ".join(f"{row.emoji} {row.name}" for row in CELLS)
        + f"; {LEAK_SYMBOL} after another symbol: that cell also leaked."
    )
    yield "Tests: " + ", ".join(f"{row.emoji} {row.name}" for row in (*TESTS, STRICT_XPASS)) + "."
    yield ""
    yield "<details><summary>How each status is decided</summary>"
    yield ""
    for row in CELLS:
        yield f"- cell {row.emoji} `{row.name}`: {md_text(row.meaning)}"
    for row in (*TESTS, STRICT_XPASS):
        yield f"- test {row.emoji} `{row.name}`: {md_text(row.meaning)}"
    yield ""
    yield "</details>"
    yield ""


# --------------------------------------------------------------------------
# documents


def _body(ledger: Ledger, known: KnownIssues, history: History | None, invocation: str, diff_items: int) -> list[str]:
    return [
        counts_line(overview(ledger)),
        "",
        *partial_lines(ledger),
        "## Summary",
        "",
        *grid_lines(grid_layout(ledger)),
        "",
        *problem_lines(ledger, known, history, invocation),
        *diff_lines(ledger.diff, limit=diff_items),
        *expected_lines(ledger, known),
        *folded_lines(ledger, known),
        *environment_lines(ledger),
        *legend_lines(),
    ]


def render_markdown(
    ledger: Ledger, known: KnownIssues, history: History | None = None, invocation: str = "compat"
) -> str:
    head = [f"# {title(ledger)}", "", heading(ledger), ""]
    return "\n".join(head + _body(ledger, known, history, invocation, DIFF_ITEMS))


def render_summary(
    ledger: Ledger,
    known: KnownIssues,
    full_report: str,
    limit: int = SUMMARY_BUDGET,
    history: History | None = None,
    invocation: str = "compat",
) -> str:
    """The job summary: the same document, cut to fit GitHub's 1 MiB."""
    head = [f"# {title(ledger)}", "", heading(ledger), ""]
    return _fit(head, _body(ledger, known, history, invocation, 20), limit, full_report)


def _fit(head: list[str], body: list[str], limit: int, full_report: str) -> str:
    out = list(head)
    size = sum(len(x.encode()) + 1 for x in out)
    for i, line in enumerate(body):
        n = len(line.encode()) + 1
        if size + n > limit:
            out += [
                "",
                f"**Truncated**: {len(body) - i} more line(s) did not fit in the job summary; "
                f"the full report is {full_report}.",
            ]
            break
        out.append(line)
        size += n
    return "\n".join(out) + "\n"
