"""The history of a cell, or of a test in a cell, over the last runs: a strip of small marks drawn
as inline SVG from history.jsonl (no script, no image file: it is part of the page)."""

from __future__ import annotations

import html

from ..results.status import FAILING
from .history import History, status_in

RUNS = 20
MARK_W, MARK_H, GAP = 7, 14, 2
COLOURS = {"pass": "#2da44e", "fail": "#cf222e", "flaky": "#bf8700", "timeout": "#8250df", "other": "#8c959f"}
NONE = "#eaeef2"  # not run in that run


def _colour(status: str | None) -> str:
    if status is None:
        return NONE
    if status == "timeout":
        return COLOURS["timeout"]
    if status in FAILING or status in ("failing", "error", "xpassed-strict"):
        return COLOURS["fail"]
    if status == "flaky":
        return COLOURS["flaky"]
    if status in ("ok", "passed", "xfailed"):
        return COLOURS["pass"]
    return COLOURS["other"]


def strip(marks: list[tuple[str, str | None]], label: str) -> str:
    """``marks``: (run id, status or None) oldest first; one mark each, its run and status on hover."""
    width = len(marks) * (MARK_W + GAP)
    rects = "".join(
        f'<rect x="{i * (MARK_W + GAP)}" y="0" width="{MARK_W}" height="{MARK_H}" fill="{_colour(s)}">'
        f"<title>{html.escape(run)}: {html.escape(s or 'not run')}</title></rect>"
        for i, (run, s) in enumerate(marks)
    )
    return (
        f'<svg class="strip" role="img" aria-label="{html.escape(label, quote=True)}" width="{width}" '
        f'height="{MARK_H}" viewBox="0 0 {width} {MARK_H}">{rects}</svg>'
    )


def cell_strip(history: History, cell: str, runs: int = RUNS) -> str:
    records = history.records[-runs:]
    return strip([(r.run_id, r.cells.get(cell)) for r in records], f"{cell} over the last {len(records)} runs")


def result_strip(history: History, nodeid: str, cell: str, runs: int = RUNS) -> str:
    records = history.records[-runs:]
    marks = [(r.run_id, status_in(r, nodeid, cell)) for r in records]
    return strip(marks, f"{nodeid} in {cell} over the last {len(records)} runs")


def history_html(history: History | None, cells: list[str]) -> str:
    """A section: every cell's strip, oldest run left, when there are at least two runs to compare."""
    if history is None or len(history.records) < 2:
        return ""
    rows = "".join(f"<tr><th>{html.escape(c)}</th><td>{cell_strip(history, c)}</td></tr>" for c in cells)
    return (
        f"<section id='history'><h2>History</h2><details><summary>each cell over the last "
        f"{min(RUNS, len(history.records))} runs (oldest left)</summary><div class='scroll'><table>{rows}"
        "</table></div></details></section>"
    )
