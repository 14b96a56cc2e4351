"""``compat triage``: re-run failing tests where they failed and in missing neighbour cells.

The analysis (which axis explains a failure, which re-runs would settle it)
is ``results.why``; this module only runs what it plans, through the same
runners as any cell, into ``<raw>/_triage/<n>/<cell-id>/``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .matrix import Cell, Matrix
from .results.raw import read_cell, read_cells
from .results.schema import CellResult
from .results.why import (
    TRIAGE_DIR,
    AxisValues,
    Rerun,
    apply_reruns,
    cell_id,
    is_settled,
    plan_reruns,
    read_index,
    read_reruns_from,
    write_index,
)
from .runners.schedule import run_cells


def run(matrix: Matrix, raw_dir: Path, *, max_reruns: int, runner: str | None = None, progress: bool = False) -> int:
    """Re-run what ``plan_reruns`` proposes; the index and labels go to ``_triage/triage.json``."""
    index = read_index(raw_dir)
    cells = read_cells(raw_dir)
    values = matrix.axes.values()
    done = [(r.nodeid, r.cell, r.purpose) for r in index.reruns]
    wanted = plan_reruns(cells, values, max_reruns, done)
    runner = runner or _runner_used(cells)
    # One run per cell and round: the n-th repeat of a test where it failed is the n-th round's.
    by_cell: dict[tuple[AxisValues, int], list[tuple[str, str]]] = {}
    for nodeid, axes, purpose in wanted:
        round_ = sum(1 for (a, _), ts in by_cell.items() if a == axes and (nodeid, purpose) in ts)
        by_cell.setdefault((axes, round_), []).append((nodeid, purpose))
    extra_names = [x.name for x in matrix.axes.extra]
    for (axes, _), targets in by_cell.items():
        sub = f"{len(index.reruns):04d}"
        nodeids = tuple(dict.fromkeys(n for n, _ in targets))
        narrowed = msgspec.structs.replace(matrix, target=msgspec.structs.replace(matrix.target, tests=nodeids))
        python, group, backend, capture, *extra = axes
        cell = Cell(python, group, backend, capture, tuple(zip(extra_names, extra, strict=True)))
        run_cells(narrowed, [cell], out_dir=raw_dir / TRIAGE_DIR / sub, runner=runner, progress=progress)
        rerun_cell = read_cell(raw_dir / TRIAGE_DIR / sub / cell_id(axes))
        for nodeid, purpose in targets:
            test = rerun_cell.tests.get(nodeid)
            index.reruns.append(
                Rerun(
                    nodeid=nodeid, cell=cell_id(axes), dir=f"{sub}/{cell_id(axes)}",
                    purpose=purpose, status=test.status if test else rerun_cell.status,
                )
            )  # fmt: skip
    index.labels = apply_reruns(cells, read_reruns_from(raw_dir, index)).labels()
    index.budget = max_reruns
    index.skipped = max(0, len(plan_reruns(cells, values, 10**6, done)) - len(wanted))
    write_index(raw_dir, index)
    settled = sum(1 for label in index.labels.values() if is_settled(label))
    print(
        f"compat: triage: {len(wanted)} re-run(s) in {len(by_cell)} cell(s); {settled} of {len(index.labels)} "
        f"failing test(s) explained" + (f"; {index.skipped} more re-run(s) beyond the bound" if index.skipped else ""),
        file=sys.stderr,
    )
    return 0


def _runner_used(cells: Sequence[CellResult]) -> str:
    kinds = [c.meta.runner for c in cells if c.meta is not None]
    return max(set(kinds), key=kinds.count) if kinds else "auto"
