"""history.jsonl beside the published table: one compact record per run, newest last.

A record keeps each cell's status and each test's result per cell as one
character per cell, in the record's own cell order (a passing-everywhere test
is only named), so 100 runs of the default matrix stay far under 5 MB. The
report reads it back for rates ("failed 3 of the last 10 runs in ...") and
for since when a test fails.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ..results.ledger import Ledger
from ..results.status import ABSENT, BY_CODE, FAILING, TEST

NAME = "history.jsonl"
KEEP_RUNS = 200
RATE_RUNS = 10


class Record(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    run_id: str
    timestamp: float
    revision: str | None = None
    partial: str = ""
    cells: dict[str, str]  # cell id -> cell status, in the order of `tests` strings
    passed: tuple[str, ...] = ()  # tests that passed in every cell that ran them
    tests: dict[str, str] = {}  # other tests -> one status code per cell (ABSENT where not collected)


def record(ledger: Ledger) -> Record:
    order = [c.id for c in ledger.cells]
    passed, tests = [], {}
    for t in ledger.tests:
        if all(r.status == "passed" for r in t.results.values()):
            passed.append(t.nodeid)
            continue
        tests[t.nodeid] = "".join(TEST[r.status].code if (r := t.results.get(cid)) else ABSENT for cid in order)
    return Record(
        run_id=ledger.run_id,
        timestamp=ledger.timestamp,
        revision=ledger.target.revision,
        partial=ledger.partial,
        cells={c.id: c.status for c in ledger.cells},
        passed=tuple(passed),
        tests=tests,
    )


def status_in(rec: Record, nodeid: str, cell: str) -> str | None:
    """The test's status in that cell in that run; None when it did not run there."""
    if cell not in rec.cells:
        return None
    if nodeid in rec.tests:
        code = rec.tests[nodeid][list(rec.cells).index(cell)]
        return None if code == ABSENT else BY_CODE[code].name
    return "passed" if nodeid in rec.passed else None


class History:
    """The records of earlier runs plus this one, oldest first."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)

    @classmethod
    def read(cls, path: Path) -> tuple[History, str]:
        """(history, problem): a damaged line is skipped and counted, never fatal."""
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return cls([]), ""
        except OSError as exc:
            return cls([]), f"{path}: unreadable ({exc.strerror}); no history used"
        records, bad = [], 0
        decoder = msgspec.json.Decoder(Record)
        for line in lines:
            if not line.strip():
                continue
            try:
                records.append(decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                bad += 1
        return cls(records), f"{path}: {bad} damaged line(s) skipped" if bad else ""

    def with_run(self, rec: Record) -> History:
        """This run added (replacing an earlier record of the same run id), at most KEEP_RUNS kept."""
        kept = [r for r in self.records if r.run_id != rec.run_id] + [rec]
        return History(kept[-KEEP_RUNS:])

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        encoder = msgspec.json.Encoder()
        with open(tmp, "wb") as f:
            for rec in self.records:
                f.write(encoder.encode(rec) + b"\n")
        os.replace(tmp, path)

    def results(self, nodeid: str, cell: str) -> list[tuple[Record, str]]:
        """(run, status) of every run that ran the test in that cell, oldest first."""
        found = []
        for rec in self.records:
            status = status_in(rec, nodeid, cell)
            if status is not None:
                found.append((rec, status))
        return found

    def describe(self, nodeid: str, cells: Sequence[str], last: int = RATE_RUNS) -> str:
        """``failed 3 of the last 10 runs in CELL; since 2026-11-30 (run R)`` for the test's worst cell."""
        best = ""
        worst = -1
        for cell in cells:
            every = self.results(nodeid, cell)
            runs = every[-last:]
            if len(runs) < 2:
                continue
            bad = sum(1 for _, s in runs if s in FAILING or s == "flaky")
            if bad <= worst:
                continue
            worst = bad
            text = f"failed {bad} of the last {len(runs)} runs in {cell}"
            since = _since(every)
            if since is not None:
                text += f"; failing since {_when(since.timestamp)} (run {since.run_id})"
            best = text
        return best


def _since(runs: list[tuple[Record, str]]) -> Record | None:
    """The first run of the current streak of failures (None: the last run did not fail)."""
    start = None
    for rec, status in reversed(runs):
        if status not in FAILING:
            break
        start = rec
    return start


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d")


def update(path: Path, ledger: Ledger) -> tuple[History, str]:
    """Read the history at ``path``, add this run, write it back; (history, problem)."""
    history, problem = History.read(path)
    history = history.with_run(record(ledger))
    try:
        history.write(path)
    except OSError as exc:
        problem = f"{path}: not written ({exc.strerror}); this run is missing from the history"
    return history, problem


def read(path: Path, ledger: Ledger) -> tuple[History, str]:
    """The history at ``path`` with this run added in memory only: a partial report writes nothing."""
    history, problem = History.read(path)
    return history.with_run(record(ledger)), problem
