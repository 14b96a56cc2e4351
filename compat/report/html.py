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

from ..results.ledger import DIFF_KINDS, Diff, Ledger, LedgerResult, LedgerTest
from .view import (
    CELL_MEANING,
    DECIDED,
    NOT_APPLICABLE,
    TEST_MEANING,
    KnownIssues,
    Layout,
    column_label,
    counts_title,
    heading,
    layout,
)

_ASSETS = files(__package__) / "assets"
# The page's own CSS, script and filter form live as plain files beside this module.
_CSS = (_ASSETS / "report.css").read_text(encoding="utf-8")
_JS = (_ASSETS / "report.js").read_text(encoding="utf-8")
_CONTROLS = (_ASSETS / "controls.html").read_text(encoding="utf-8")

PAGE_LIMIT = 1_000_000
PAGE_BUDGET = PAGE_LIMIT - 40_000

CODE = {
    "passed": "p",
    "failed": "f",
    "error": "e",
    "xfailed": "x",
    "xpassed": "X",
    "skipped": "s",
    "timeout": "t",
    "not-run": "n",
    "flaky": "k",
}
STRICT_XPASS = "S"

# Plain glyphs rather than emoji: the page must read the same on a machine
# without an emoji font (CI screenshots, minimal desktops); colour carries the rest.
CELL_GLYPH = {
    "ok": "✓",
    "failing": "✗",
    "timeout": "T",
    "leaked": "L",
    "unsupported": "U",
    "unavailable": "–",
    "excluded": "n/a",
    "error": "E",
}
GLYPH = {
    "p": "✓",
    "f": "✗",
    "e": "E",
    "x": "xf",
    "X": "XP",
    "S": "XP!",
    "s": "s",
    "t": "T",
    "n": "–",
    "k": "~",
    ".": "·",
}


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def _code(r: LedgerResult) -> str:
    if r.status == "xpassed" and r.strict:
        return STRICT_XPASS
    return CODE[r.status]


def _md_inline(text: str) -> str:
    """The heading's `code` spans as <code>."""
    parts = esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


# --------------------------------------------------------------------------
# static parts


def diff_html(diff: Diff | None, known: KnownIssues) -> Iterator[str]:
    if diff is None:
        return
    yield '<section id="diff"><h2>Changes since the last published report</h2>'
    if diff.problem:
        yield f"<p><em>{esc(diff.problem)}</em></p></section>"
        return
    yield f"<p>Baseline <code>{esc(diff.baseline)}</code> (run <code>{esc(str(diff.baseline_run_id))}</code>).</p>"
    if not diff.changes:
        yield "<p>No changes.</p></section>"
        return
    for kind, title in DIFF_KINDS.items():
        items = diff.of(kind)
        if not items:
            continue
        cls = "bad" if kind == "new-failure" else "good" if kind == "fixed" else "warn"
        yield f'<details open class="diff {cls}" data-kind="{kind}"><summary>{esc(title)} ({len(items)})</summary><ul>'
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


def grid_html(lay: Layout) -> Iterator[str]:
    yield '<table id="grid"><thead><tr><th>backend</th>'
    for col in lay.columns:
        yield f"<th>{column_label(col, '<br>')}</th>"
    yield "</tr></thead><tbody>"
    for backend in lay.backends:
        yield f'<tr data-backend="{esc(backend)}"><th>{esc(backend)}</th>'
        for col in lay.columns:
            cell = lay.cell(backend, col)
            if cell is None:
                yield f"<td>{GLYPH['.']}</td>"
                continue
            yield (
                f'<td class="c-{cell.status}" data-cell="{esc(cell.id)}" data-status="{cell.status}" '
                f'title="{esc(counts_title(cell))}">{CELL_GLYPH[cell.status]}</td>'
            )
        yield "</tr>"
    yield "</tbody></table>"


def problem_cells_html(ledger: Ledger, known: KnownIssues) -> Iterator[str]:
    bad = [c for c in ledger.cells if c.status != "ok" and c.status not in NOT_APPLICABLE]
    if not bad:
        return
    yield '<details id="problem-cells"><summary>Cells that are not ok (' + str(len(bad)) + ")</summary><ul>"
    for c in bad:
        yield (
            f'<li class="c-{c.status}">{CELL_GLYPH[c.status]} <code>{esc(c.id)}</code> <b>{c.status}</b>'
            + (f": {_linked(c.reason, known)}" if c.reason else "")
            + "</li>"
        )
    yield "</ul></details>"


def legend_html() -> Iterator[str]:
    yield '<section id="legend"><h2>Legend</h2><table><tr><th>cell</th><th>meaning</th></tr>'
    for k, v in CELL_MEANING.items():
        yield f'<tr><td class="c-{k}">{CELL_GLYPH[k]} {k}</td><td>{esc(v)}</td></tr>'
    yield "</table><table><tr><th>test</th><th>meaning</th></tr>"
    for k, v in TEST_MEANING.items():
        yield f'<tr><td class="t-{CODE[k]}">{GLYPH[CODE[k]]} {k}</td><td>{esc(v)}</td></tr>'
    yield (
        f'<tr><td class="t-S">{GLYPH["S"]} strict xpass</td><td>xpassed under a strict marker</td></tr>'
        f"<tr><td>{GLYPH['.']}</td><td>not collected in that cell</td></tr></table>"
    )
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
        codes = "".join(_code(t.results[c.id]) if c.id in t.results else "." for c in ledger.cells)
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
        "glyph": GLYPH,
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


def render_html(ledger: Ledger, known: KnownIssues) -> str:
    lay = layout(ledger)
    static = "".join(
        [
            f"<h1>Compatibility</h1><p id='heading'>{_md_inline(heading(ledger))}</p>",
            *diff_html(ledger.diff, known),
            "<h2>Summary</h2>",
            *grid_html(lay),
            *problem_cells_html(ledger, known),
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
