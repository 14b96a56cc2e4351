"""index.html: the report as one self-contained page (inline CSS and JS, no network).

The summary grid, diff and legend are plain HTML.  The per-test table is
drawn by the inline script from a compact JSON island, so 5,000 tests fit
well under 1 MB; failure messages are clipped to a shared byte budget.
Filters live in the URL fragment (``#backend=trio&python=3.14&status=failed
&green=show&q=text&sort=test``), so a link reproduces a view.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from ..paths import repro_command
from ..results.ledger import DIFF_KINDS, REGRESSIONS, Diff, Ledger, LedgerCell, LedgerResult, LedgerTest
from ..results.schema import Hang
from ..results.status import ABSENT, ABSENT_GLYPH, CELL, CELLS, STRICT_XPASS, TEST, TESTS, Status, page_data, row_of
from .findings import (
    Finding,
    expected_failures,
    folded_sections,
    leaky_cells,
    overview,
    problem_cells,
    problems,
)
from .history import History
from .markdown import counts_line, environment_lines, folded_run_lines
from .strips import history_html, result_strip
from .view import (
    DECIDED,
    KnownIssues,
    Layout,
    column_label,
    grid_layout,
    heading,
    layout,
    title,
)

_ASSETS = files(__package__) / "assets"
# The page's own CSS, script and filter form live as plain files beside this module.
_CSS = (_ASSETS / "report.css").read_text(encoding="utf-8")
_JS = (_ASSETS / "report.js").read_text(encoding="utf-8")
_CONTROLS = (_ASSETS / "controls.html").read_text(encoding="utf-8")

PAGE_LIMIT = 1_000_000
PAGE_BUDGET = PAGE_LIMIT - 40_000

# The page's glyphs are plain characters, not emoji (status.py): it must read the same on a machine
# without an emoji font (CI screenshots, minimal desktops); colour carries the rest.
LEAK_GLYPH = "+" + CELL["leaked"].glyph
LIST_ITEMS = 200


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def _row(r: LedgerResult) -> Status:
    return row_of(r.status, strict=r.strict)


def _md_bold(text: str) -> str:
    """The counts line's **bold** parts as <b>."""
    parts = esc(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _md_inline(text: str) -> str:
    """The heading's `code` spans as <code>."""
    parts = esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


# --------------------------------------------------------------------------
# static parts


def _md(text: str) -> str:
    """A line the Markdown report has, with its **bold** and `code` parts."""
    parts = _md_inline(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def notes_html(ledger: Ledger) -> Iterator[str]:
    """Which runs the table folds, and its stale cells, as the Markdown says them."""
    for line in folded_run_lines(ledger):
        if line:
            yield f"<p class='note'>{_md(line.removeprefix('> '))}</p>"


def environment_html(ledger: Ledger) -> Iterator[str]:
    items = [line.removeprefix("- ") for line in environment_lines(ledger) if line.startswith("- ")]
    if items:
        yield "<section id='environment'><h2>What ran</h2><ul>"
        yield "".join(f"<li>{_md(item)}</li>" for item in items)
        yield "</ul></section>"


def diff_html(diff: Diff | None, known: KnownIssues) -> Iterator[str]:
    if diff is None:
        return
    yield '<section id="diff"><h2>Changes since the last published report</h2>'
    if diff.problem:
        yield f"<p><em>{esc(diff.problem)}</em></p></section>"
        return
    yield f"<p>Baseline <code>{esc(diff.baseline)}</code> (run <code>{esc(str(diff.baseline_run_id))}</code>).</p>"
    not_run = diff.not_run_cells or diff.not_run_tests
    if not_run:
        yield (
            f'<p id="not-run"><b>Not run in this run:</b> {len(diff.not_run_cells)} cell(s) and '
            f"{diff.not_run_tests} test(s) of the baseline: their results are unknown here, not unchanged.</p>"
        )
    if not diff.changes:
        yield f"<p>{'No changes in what ran.' if not_run else 'No changes.'}</p></section>"
        return
    for kind, kind_title in DIFF_KINDS.items():
        items = diff.of(kind)
        if not items:
            continue
        cls = "bad" if kind in REGRESSIONS else "good" if kind == "fixed" else "warn"
        summary = f"{esc(kind_title)} ({len(items)})"
        yield f'<details open class="diff {cls}" data-kind="{kind}"><summary>{summary}</summary><ul>'
        for c in items[:200]:
            what = f"<code>{esc(c.nodeid)}</code> in " if c.nodeid else ""
            reason = f" — {_linked(c.reason, known)}" if c.reason else ""
            change = f"{esc(c.before or 'absent')} → {esc(str(c.after))}"
            yield f"<li>{what}<code>{esc(c.cell)}</code>: {change}{reason}</li>"
        if len(items) > 200:
            yield f"<li>… and {len(items) - 200} more (see compat.json)</li>"
        yield "</ul></details>"
    yield "</section>"


def _linked(text: str, known: KnownIssues) -> str:
    return known.link(text, lambda t, href: f'<a href="{esc(href)}">{esc(t)}</a>', esc)


def grid_html(ledger: Ledger) -> Iterator[str]:
    grid = grid_layout(ledger)
    yield '<div class="scroll"><table id="grid"><thead><tr><th></th>'
    for backend, capture in grid.columns:
        yield f"<th>{esc(backend)}<br>{esc(capture)}</th>"
    yield "</tr></thead><tbody>"
    for row in grid.rows:
        yield f"<tr><th>{esc(' '.join(row))}</th>"
        for col in grid.columns:
            cell = grid.cell(row, col)
            if cell is None:
                yield f"<td>{ABSENT_GLYPH}</td>"
                continue
            leak = LEAK_GLYPH if cell.leaks.total and cell.status != "leaked" else ""
            yield (
                f'<td class="c-{cell.status}" data-cell="{esc(cell.id)}" data-status="{cell.status}" '
                f'data-backend="{esc(cell.backend)}" data-python="{esc(cell.python)}" '
                f'title="{esc(grid.title(cell))}">{CELL[cell.status].glyph}{leak}{esc(grid.count(cell))}</td>'
            )
        yield "</tr>"
    yield "</tbody></table></div>"


def _finding_html(f: Finding, known: KnownIssues, invocation: str, history: History | None = None) -> str:
    row = row_of(f.status, strict=f.strict)
    text = (
        f'<li class="finding" data-status="{esc(f.status)}"><span class="t-{row.css}">{row.glyph}</span> '
        f"<code>{esc(f.nodeid)}</code> <b>{esc(f.verb)}</b> in {esc(f.where)}"
    )
    if f.reason:
        text += f" — {_linked(f.reason, known)}"
    if f.why:
        text += f" <i>(why: {esc(f.why)})</i>"
    extra = [esc(f.history)] if f.history else []
    if f.history and history is not None and len(history.records) > 1:
        extra.insert(0, result_strip(history, f.nodeid, f.cells[0]))
    extra.append(f"repro: <code>{esc(repro_command(f.cells[0], f.nodeid, invocation))}</code>")
    return (
        text
        + '<br><span class="more">'
        + " · ".join(extra)
        + "</span>"
        + "".join(
            hang_html(hang, cell, known, name_cell=len(f.hangs) > 1 or len(f.cells) > 1) for cell, hang in f.hangs
        )
        + "</li>"
    )


def problems_html(ledger: Ledger, known: KnownIssues, history: History | None, invocation: str) -> Iterator[str]:
    found = problems(ledger, history)
    bad, leaks = problem_cells(ledger), leaky_cells(ledger)
    yield '<section id="problems"><h2>Failing, timing out, flaky, leaking</h2>'
    if not (found or bad or leaks):
        yield "<p>Nothing fails, times out, is flaky or leaks.</p></section>"
        return
    if found:
        yield "<ul>" + "".join(_finding_html(f, known, invocation, history) for f in found[:LIST_ITEMS]) + "</ul>"
        if len(found) > LIST_ITEMS:
            yield f"<p>… and {len(found) - LIST_ITEMS} more in the table below.</p>"
    if bad:
        yield "<p>Cells that did not finish cleanly:</p><ul>"
        for c in bad:
            reason = f": {_linked(c.reason, known)}" if c.reason else ""
            glyph = CELL[c.status].glyph
            hang = _hang(c, known)
            yield f'<li class="c-{c.status}">{glyph} <code>{esc(c.id)}</code> <b>{c.status}</b>{reason}{hang}</li>'
        yield "</ul>"
    if leaks:
        yield '<p>Leaks (whatever else the cell did):</p><ul id="leaks">'
        for c in leaks:
            detail = "; ".join(c.leaks.details[:3])
            yield (
                f'<li class="c-leaked">{LEAK_GLYPH} <code>{esc(c.id)}</code>: {esc(c.leaks.summary())}'
                + (f" — {esc(detail)}" if detail else "")
                + "</li>"
            )
        yield "</ul>"
    yield "</section>"


def _hang(c: LedgerCell, known: KnownIssues) -> str:
    return hang_html(next((h for h in c.hangs if h.bound == "per-cell"), None), c.id, known)


def hang_html(hang: Hang | None, cell: str, known: KnownIssues, *, name_cell: bool = False) -> str:
    """A hang's class and detail, then (folded) where each process and interpreter was, and the evidence."""
    if hang is None:
        return ""
    at = f" in <code>{esc(cell)}</code>" if name_cell else ""
    parts = [
        f'<br><span class="hang" data-hang="{esc(hang.kind)}">hang{at}: <b>{esc(hang.kind)}</b> — {esc(hang.detail)}'
    ]
    if hang.child:
        parts.append(f"<br>its child: {esc(hang.child)}")
    parts += [f"<br>stuck: <code>{esc(task)}</code>" for task in hang.stuck[:3]]
    parts.append("</span>")
    rows = []
    for where in hang.frames:
        interp = f", interpreter {where.interpreter}" if where.interpreter else ""
        gil = ", holding the GIL" if where.gil else ""
        rows.append(f"<li>pid {where.pid} {esc(where.thread)}{interp}{gil}: <code>{esc(where.frame)}</code></li>")
    if hang.stacks_problem and not hang.frames:
        rows.append(f"<li>{esc(hang.stacks_problem)}</li>")
    links = " ".join(f'<a href="{esc(known.raw)}{esc(cell)}/{esc(f)}">{esc(f)}</a>' for f in hang.files)
    if rows or links:
        parts.append(
            f'<details class="stacks"><summary>where it was stuck ({len(hang.frames)} frame(s)), and the evidence'
            f"</summary><ul>{''.join(rows)}</ul>{links}</details>"
        )
    return "".join(parts)


def expected_html(ledger: Ledger, known: KnownIssues) -> Iterator[str]:
    found = expected_failures(ledger)
    if not found:
        return
    yield f'<section id="expected"><h2>Expected failures</h2><details><summary>{len(found)} test(s)</summary><ul>'
    for f in found[:LIST_ITEMS]:
        reason = f" — {_linked(f.reason, known)}" if f.reason else ""
        yield (
            f'<li><span class="t-{TEST[f.status].css}">{TEST[f.status].glyph}</span> <code>{esc(f.nodeid)}</code> '
            f"<b>{esc(f.verb)}</b> in {esc(f.where)}{reason}</li>"
        )
    yield "</ul></details></section>"


def folded_html(ledger: Ledger, known: KnownIssues) -> Iterator[str]:
    sections = folded_sections(ledger)
    if not sections:
        return
    yield '<section id="folded"><h2>Skips and n/a</h2>'
    for section in sections:
        yield f"<details><summary>{esc(section.summary)}</summary><ul>"
        for f in section.items[:LIST_ITEMS]:
            yield f"<li>{f.count} {section.unit}: {_linked(f.reason, known)} — {esc(f.where)}</li>"
        yield "</ul></details>"
    yield "</section>"


def legend_html() -> Iterator[str]:
    yield '<section id="legend"><h2>Legend</h2><table><tr><th>cell</th><th>meaning</th></tr>'
    for row in CELLS:
        yield f'<tr><td class="c-{row.css}">{row.glyph} {row.name}</td><td>{esc(row.meaning)}</td></tr>'
    yield "</table><table><tr><th>test</th><th>meaning</th></tr>"
    for row in (*TESTS, STRICT_XPASS):
        yield f'<tr><td class="t-{row.css}">{row.glyph} {row.name}</td><td>{esc(row.meaning)}</td></tr>'
    yield f"<tr><td>{ABSENT_GLYPH}</td><td>not collected in that cell</td></tr></table>"
    yield "<h2>How each status is decided</h2><ul>"
    for line in DECIDED:
        yield f"<li>{_md_inline(line)}</li>"
    yield "</ul></section>"


# --------------------------------------------------------------------------
# the data island


def table_data(ledger: Ledger, lay: Layout, known: KnownIssues, budget: int) -> dict[str, Any]:
    """The per-test table as compact JSON: shared strings are indexed, uniform
    status strings collapse to one letter, cells sharing a note share one entry."""
    cell_index = {c.id: i for i, c in enumerate(ledger.cells)}
    col_index = {col: i for i, col in enumerate(lay.columns)}
    backend_index = {b: i for i, b in enumerate(lay.backends)}
    whys: dict[str, int] = {"": 0}
    texts: dict[str, int] = {"": 0}
    files: dict[str, int] = {"": 0}
    tests, notes = [], []
    for ti, t in enumerate(ledger.tests):
        codes = "".join(_row(t.results[c.id]).code if c.id in t.results else ABSENT for c in ledger.cells)
        if len(set(codes)) == 1:
            codes = codes[0]
        file, sep, name = t.nodeid.partition("::")
        if not sep:
            file, name = "", t.nodeid
        tests.append([files.setdefault(file, len(files)), name, codes, whys.setdefault(t.why, len(whys))])
        notes.extend(_test_notes(ti, t, cell_index, texts))
    data = {
        "cols": [column_label(col) for col in lay.columns],
        "colPython": [col[0] for col in lay.columns],
        "backends": list(lay.backends),
        "cells": [
            [backend_index.get(c.backend, -1), col_index.get((c.python, c.group, c.capture), -1), c.id]
            for c in ledger.cells
        ],
        "files": list(files),
        "whys": list(whys),
        "reasons": list(texts),
        "tests": tests,
        "notes": notes,
        "links": known.slugs,
        "status": page_data(),
    }
    _clip_messages(data, budget)
    return data


def _test_notes(ti: int, t: LedgerTest, cell_index: dict[str, int], texts: dict[str, int]) -> list[list[Any]]:
    """[test, reason, message, cell...] per distinct (reason, message) of a test."""
    grouped: dict[tuple[int, str], list[int]] = {}
    for cid, r in t.results.items():
        if r.status != "passed" and (r.reason or r.message):
            key = (texts.setdefault(r.reason, len(texts)), r.message)
            grouped.setdefault(key, []).append(cell_index[cid])
    return [[ti, reason, message, *cells] for (reason, message), cells in grouped.items()]


def _clip_messages(data: dict[str, Any], budget: int) -> None:
    """Clip every message to the longest tail that keeps the island in budget."""
    full = [n[2] for n in data["notes"]]
    data["clipped"] = False
    if len(_island(data).encode()) <= budget:
        return
    for n in data["notes"]:
        n[2] = ""
    room = budget - len(_island(data).encode()) - 60 * len(full)

    def cost(limit: int) -> int:
        return sum(len(json.dumps(m[-limit:] if len(m) > limit else m, ensure_ascii=False).encode()) for m in full)

    lo, hi = 0, max((len(m) for m in full), default=0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= room else (lo, mid - 1)
    for n, m in zip(data["notes"], full, strict=True):
        n[2] = m if len(m) <= lo else ("… (clipped; full text in compat.json)\n" + m[-lo:] if lo else "")
    data["clipped"] = True


def _island(data: dict[str, Any]) -> str:
    # "</" must not appear inside a <script> element.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


# --------------------------------------------------------------------------
# the page


def render_html(ledger: Ledger, known: KnownIssues, history: History | None = None, invocation: str = "compat") -> str:
    lay = layout(ledger)
    partial = f"<p id='partial'><b>Partial run:</b> {esc(ledger.partial)}. Counts cover only what ran.</p>"
    static = "".join(
        [
            f"<h1>{esc(title(ledger))}</h1><p id='heading'>{_md_inline(heading(ledger))}</p>",
            f"<p id='counts'>{_md_bold(counts_line(overview(ledger)))}</p>",
            partial if ledger.partial else "",
            *notes_html(ledger),
            "<h2>Summary</h2>",
            *grid_html(ledger),
            *problems_html(ledger, known, history, invocation),
            *diff_html(ledger.diff, known),
            *expected_html(ledger, known),
            *folded_html(ledger, known),
            *environment_html(ledger),
            history_html(history, [c.id for c in ledger.cells]),
        ]
    )
    legend = "".join(legend_html())
    budget = PAGE_BUDGET - len(static.encode()) - len(legend.encode()) - len(_CSS) - len(_JS) - len(_CONTROLS)
    data = _island(table_data(ledger, lay, known, budget))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Compatibility — {esc(ledger.run_id)}</title><style>{_CSS}</style></head><body>"
        f"{static}{_CONTROLS}<script id='data' type='application/json'>{data}</script>"
        f"{legend}<script>{_JS}</script></body></html>"
    )
