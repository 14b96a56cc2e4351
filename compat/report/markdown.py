"""COMPATIBILITY.md and the GitHub job summary, from a ledger."""

from __future__ import annotations

import html
from collections.abc import Iterator

from ..results.ledger import DIFF_KINDS, Diff, Ledger, LedgerResult
from .view import (
    ABSENT,
    CELL_MEANING,
    CELL_SYMBOL,
    DECIDED,
    NOT_APPLICABLE,
    STRICT_XPASS_SYMBOL,
    TEST_MEANING,
    TEST_SYMBOL,
    KnownIssues,
    Layout,
    column_label,
    counts_title,
    heading,
    interesting_tests,
    layout,
    reasons,
    result_symbol,
)

SUMMARY_LIMIT = 1024 * 1024
SUMMARY_BUDGET = SUMMARY_LIMIT - 16 * 1024  # room for the truncation note
DIFF_ITEMS = 50


def md_escape(text: str) -> str:
    """Safe inside a Markdown table cell: no pipes, no newlines, no raw HTML."""
    text = " ".join(text.split())
    return html.escape(text, quote=False).replace("|", "\\|")


def _md_link(text: str, href: str) -> str:
    return f"[{md_escape(text)}]({href})"


def title_span(symbol: str, title: str) -> str:
    return f'<span title="{html.escape(title, quote=True)}">{symbol}</span>'


# --------------------------------------------------------------------------
# pieces, each yielding lines


def diff_lines(diff: Diff | None, limit: int = DIFF_ITEMS) -> Iterator[str]:
    if diff is None:
        return
    yield "## Changes since the last published report"
    yield ""
    if diff.problem:
        yield f"_{md_escape(diff.problem)}_"
        yield ""
        return
    yield f"Baseline: `{diff.baseline}` (run `{diff.baseline_run_id}`)."
    yield ""
    if not diff.changes:
        yield "No changes."
        yield ""
        return
    for kind, title in DIFF_KINDS.items():
        items = diff.of(kind)
        if not items:
            continue
        yield f"**{title} ({len(items)})**"
        yield ""
        for c in items[:limit]:
            what = f"`{c.nodeid}` in " if c.nodeid else ""
            yield f"- {what}`{c.cell}`: {c.before or 'absent'} → {c.after}" + (
                f" — {md_escape(c.reason)}" if c.reason else ""
            )
        if len(items) > limit:
            yield f"- … and {len(items) - limit} more (see compat.json)"
        yield ""


def grid_lines(lay: Layout) -> Iterator[str]:
    yield "| backend | " + " | ".join(column_label(c, "<br>") for c in lay.columns) + " |"
    yield "|---|" + "|".join(":-:" for _ in lay.columns) + "|"
    for backend in lay.backends:
        row = []
        for col in lay.columns:
            cell = lay.cell(backend, col)
            row.append(title_span(CELL_SYMBOL[cell.status], counts_title(cell)) if cell else ABSENT)
        yield f"| **{backend}** | " + " | ".join(row) + " |"


def problem_cell_lines(ledger: Ledger, known: KnownIssues) -> Iterator[str]:
    bad = [c for c in ledger.cells if c.status != "ok" and c.status not in NOT_APPLICABLE]
    if not bad:
        return
    yield ""
    yield "Cells that are not ok:"
    yield ""
    for c in bad:
        yield f"- {CELL_SYMBOL[c.status]} `{c.id}` **{c.status}**" + (
            f": {known.link(c.reason, _md_link, md_escape)}" if c.reason else ""
        )


def backend_lines(ledger: Ledger, lay: Layout, backend: str, known: KnownIssues) -> Iterator[str]:
    cols = lay.backend_cells(backend)
    ids = {c.id for _, c in cols}
    tests = interesting_tests(ledger, ids)
    yield f"## {backend}"
    yield ""
    if not tests:
        ran = any(t.results.keys() & ids for t in ledger.tests)
        yield (
            "Every test passed in every cell."
            if ran
            else "No test ran in any of its cells (see the summary for why)."
            if ids
            else "No cells."
        )
        yield ""
        return
    yield f"{len(tests)} test(s) not plainly passing in every cell."
    yield ""
    yield "| test | " + " | ".join(column_label(col) for col, _ in cols) + " | why | reason |"
    yield "|---|" + "|".join(":-:" for _ in cols) + "|---|---|"
    for t in tests:
        symbols = [_result_cell(t.results.get(c.id)) for _, c in cols]
        why = md_escape(t.why)
        reason = "; ".join(known.link(r, _md_link, md_escape) for r in reasons(t, ids)[:3])
        yield f"| `{md_escape(t.nodeid)}` | " + " | ".join(symbols) + f" | {why} | {reason} |"
    yield ""


def _result_cell(r: LedgerResult | None) -> str:
    symbol = result_symbol(r)
    if r is None or r.status == "passed":
        return symbol
    title = r.status + (" (strict)" if r.strict else "") + (f": {r.reason}" if r.reason else "")
    return title_span(symbol, " ".join(title.split())[:300])


def legend_lines() -> Iterator[str]:
    yield "## Legend"
    yield ""
    yield "Cells (summary grid): " + ", ".join(f"{s} {k}" for k, s in CELL_SYMBOL.items()) + "."
    yield ""
    yield (
        "Tests: "
        + ", ".join(f"{s} {k}" for k, s in TEST_SYMBOL.items())
        + f", {STRICT_XPASS_SYMBOL} strict xpass, {ABSENT} not collected in that cell."
    )
    yield ""
    yield "## How each status is decided"
    yield ""
    yield "| cell status | meaning |"
    yield "|---|---|"
    for k, v in CELL_MEANING.items():
        yield f"| {CELL_SYMBOL[k]} `{k}` | {v} |"
    yield ""
    yield "| test status | meaning |"
    yield "|---|---|"
    for k, v in TEST_MEANING.items():
        yield f"| {TEST_SYMBOL[k]} `{k}` | {v} |"
    yield ""
    for line in DECIDED:
        yield f"- {line}"
    yield ""


# --------------------------------------------------------------------------
# documents


def render_markdown(ledger: Ledger, known: KnownIssues) -> str:
    lay = layout(ledger)
    lines = ["# Compatibility", "", heading(ledger), ""]
    lines += diff_lines(ledger.diff)
    lines += ["## Summary", ""]
    lines += grid_lines(lay)
    lines += problem_cell_lines(ledger, known)
    lines.append("")
    for backend in lay.backends:
        lines += backend_lines(ledger, lay, backend, known)
    lines += legend_lines()
    return "\n".join(lines)


def render_summary(ledger: Ledger, known: KnownIssues, full_report: str, limit: int = SUMMARY_BUDGET) -> str:
    """The job summary: the report's head and failures, cut to fit GitHub's 1 MiB."""
    lay = layout(ledger)
    head = ["# Compatibility", "", heading(ledger), ""]
    body: list[str] = [
        *diff_lines(ledger.diff, limit=20),
        "## Summary",
        "",
        *grid_lines(lay),
        *problem_cell_lines(ledger, known),
        "",
    ]
    for backend in lay.backends:
        body += backend_lines(ledger, lay, backend, known)
    body += legend_lines()
    return _fit(head, body, limit, full_report)


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
