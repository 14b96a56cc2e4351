"""Which cells and tests to run again (``compat run --failed``, ``--failed-tests``), from the last results."""

from __future__ import annotations

from pathlib import Path

from .raw import read_cells
from .status import PROBLEM_CELLS


def failed_cells(raw_dir: Path) -> dict[str, tuple[str, ...]]:
    """Cells that were not ok in ``raw_dir``, each with the tests to run again there.

    The tests are the failing, timed-out and not-run ones; none when the cell
    failed as a whole (an error before any test, a leak): then it all runs again.
    """
    again = {"failed", "error", "timeout", "not-run"}
    return {
        cell.cell: tuple(sorted(n for n, t in cell.tests.items() if t.status in again and "::" in n))
        for cell in read_cells(raw_dir)
        if cell.status in PROBLEM_CELLS
    }
