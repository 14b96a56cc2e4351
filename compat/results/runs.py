"""The results directory's run log (``_runs.jsonl``): which cells each run ran, and whether a
pytest argument or a test id narrowed it. The report folds, per cell, the newest result since the
last run that covered every cell (``compat run`` then ``compat run --failed`` is one full table)."""

from __future__ import annotations

from pathlib import Path

import msgspec

RUNS_LOG = "_runs.jsonl"


class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    finished: float
    cells: tuple[str, ...] = ()
    selection: tuple[str, ...] = ()


def read_runs(raw_dir: Path) -> list[RunRecord]:
    """Every readable entry, oldest first; a damaged line is skipped (a run cut short writes none)."""
    try:
        lines = (raw_dir / RUNS_LOG).read_bytes().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(msgspec.json.decode(line, type=RunRecord))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return found


def since_last_full(runs: list[RunRecord], expected: set[str]) -> list[RunRecord] | None:
    """The last run that ran every expected cell, unnarrowed, and every run after it (None: there is none)."""
    for i in range(len(runs) - 1, -1, -1):
        if not runs[i].selection and expected <= set(runs[i].cells):
            return runs[i:]
    return None
