"""What a run shows where it runs: a live board on a terminal, plain lines elsewhere.

Both read each finished cell back through ``results.raw`` (the one reader of
raw results), so a cell with failing tests is reported as failing, with the
failing tests and pytest's one-line reasons, whatever pytest's exit code was.
Inside GitHub Actions the plain log also folds each cell's output into a
``::group::`` and annotates every failing test with ``::error``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..cell import protocol as P
from ..matrix import Cell
from ..paths import compat_invocation, repro_command, shown
from ..results.events import parse_events
from ..results.files import read_raw
from ..results.raw import read_cell, read_meta
from ..results.schema import CellMeta, CellResult
from ..results.status import CELL, COUNT_ORDER, FAILING, FINE_CELLS

MAX_ROWS = 12
SHOWN_FAILURES = 10
OUTPUT_TAIL = 60


@dataclass(frozen=True)
class Finished:
    cell: Cell
    result: CellResult
    duration_s: float

    @property
    def counts(self) -> str:
        counts: dict[str, int] = {}
        for t in self.result.tests.values():
            counts[t.status] = counts.get(t.status, 0) + 1
        return ", ".join(f"{counts[k]} {k}" for k in COUNT_ORDER if counts.get(k))

    def failures(self) -> list[tuple[str, str]]:
        return sorted((n, t.reason) for n, t in self.result.tests.items() if t.status in FAILING)


def finished(cell: Cell, meta: CellMeta, out_dir: Path) -> Finished:
    return Finished(cell, read_cell(out_dir / cell.id), meta.duration_s or 0.0)


def status_line(done: Finished) -> str:
    r = done.result
    detail = done.counts or r.reason
    if done.counts and r.status not in ("ok", "failing"):
        detail += f"; {r.reason}"
    return f"{r.status:<11} {done.cell.id}  {detail} ({done.duration_s:.1f} s{cached_note(r.meta)})"


def cached_note(meta: CellMeta | None) -> str:
    if meta is None:
        return ""
    if meta.cached_from:
        return f", cached from {meta.cached_from}"
    if meta.reused:
        return f", {meta.reused} reused from {', '.join(meta.reused_from)}: their modules unchanged"
    return ""


class PlainLog:
    """Lines as cells start and finish, each finished cell with its failing tests: the plain log (pipes,
    CI logs, --no-progress), and, without the start lines, what the live board prints above itself.

    On stdout, as pytest's report is: ``compat run | tee log`` keeps it; compat's own diagnostics
    (a container it removed, an error) go to stderr.
    """

    def __init__(
        self,
        cells: Sequence[Cell],
        out_dir: Path,
        *,
        stream: TextIO | None = None,
        verbosity: int = 0,
        starts: bool = True,
    ) -> None:
        self.total = len(cells)
        # As in pytest: -q only what is not ok, -v every failing test and the output of each cell that is not ok.
        self.verbosity = verbosity
        self.out_dir = out_dir
        # None: stdout as it is when a line is printed (the live board's, while it runs).
        self._stream = stream
        self.starts = starts
        self.github = os.environ.get("GITHUB_ACTIONS") == "true"
        self.finished: list[Finished] = []
        self._started = 0
        self._lock = threading.Lock()

    def __call__(self, event: str, cell: Cell, meta: CellMeta | None) -> None:
        with self._lock:
            if event == "start":
                self._started += 1
                if self.verbosity >= 0 and self.starts:
                    self._print(f"[{self._started}/{self.total}] start       {cell.id}")
            elif event == "done" and meta is not None:
                done = finished(cell, meta, self.out_dir)
                self.finished.append(done)
                if self.verbosity >= 0 or done.result.status not in FINE_CELLS:
                    self._print(f"[{len(self.finished)}/{self.total}] {status_line(done)}")
                self._details(done)

    def _details(self, done: Finished) -> None:
        failures = done.failures()
        shown = failures if self.verbosity > 0 else failures[:SHOWN_FAILURES]
        for nodeid, reason in shown:
            self._print(f"    FAILED {nodeid} - {reason}" if reason else f"    FAILED {nodeid}")
        if len(failures) > len(shown):
            self._print(f"    ... and {len(failures) - len(shown)} more (-v lists them; the report has them all)")
        if done.result.status in FINE_CELLS or not (self.github or self.verbosity > 0):
            return
        tail = _tail(self.out_dir / done.cell.id / P.OUTPUT, OUTPUT_TAIL)
        if self.github:
            self._print(f"::group::{done.cell.id}: pytest output (last {OUTPUT_TAIL} lines)")
            self._print(tail)
            self._print("::endgroup::")
        else:
            self._print(f"    --- {done.cell.id}: pytest output (last {OUTPUT_TAIL} lines) ---")
            self._print("\n".join(f"    {line}" for line in tail.splitlines()))
        if not self.github:
            return
        for nodeid, reason in failures:
            where = nodeid.split("::", 1)[0]
            title = f"{done.cell.id}: {nodeid}"
            self._print(f"::error file={_gh(where)},title={_gh(title)}::{_gh(reason or 'failed')}")

    def _print(self, line: str) -> None:
        print(line, file=self._stream or sys.stdout, flush=True)


def print_summary(
    done: Sequence[Finished],
    out_dir: Path,
    matrix_file: str = "",
    stream: TextIO | None = None,
    *,
    verbosity: int = 0,
) -> None:
    """The table at the end of a run, and what to do next (-v: every cell, not only those that are not ok)."""
    stream = stream or sys.stdout
    compat = compat_invocation(matrix_file or None)
    bad = [d for d in done if d.result.status not in FINE_CELLS]
    counts: dict[str, int] = {}
    for d in done:
        counts[d.result.status] = counts.get(d.result.status, 0) + 1
    cached = sum(1 for d in done if d.result.meta is not None and d.result.meta.cached_from)
    reused = sum(d.result.meta.reused for d in done if d.result.meta is not None and not d.result.meta.cached_from)
    lines = ["", f"{len(done)} cells: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    if cached:
        lines[-1] += f" ({cached} cached: inputs unchanged since their last clean result; --no-cache runs them)"
    if reused:
        lines.append(
            f"{reused} test results reused: their modules and all they read unchanged since (--no-cache runs them)"
        )
    lines += [f"  {status_line(d)}" for d in (done if verbosity > 0 else bad)]
    lines.append(
        f"next: {compat} report --raw {shown(str(out_dir.resolve()))}   (the table, with every failure's reason)"
    )
    if bad:
        ids = " ".join(d.cell.id for d in bad[:3])
        lines.append(f"      {compat} run {ids}{' ...' if len(bad) > 3 else ''}   (run those cells again)")
        first = next(((d, n) for d in bad for n, _ in d.failures()), None)
        if first is not None:
            lines.append(f"      {repro_command(first[0].cell.id, first[1], compat, ['--pdb'])}   (debug a failure)")
    print("\n".join(lines), file=stream, flush=True)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output.log)"
    return "\n".join(text[-lines:])


def _gh(text: str) -> str:
    """Escape a GitHub workflow-command value (data and properties)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")


def previous_durations(cells: Sequence[Cell], out_dir: Path) -> dict[Cell, float]:
    """How long each cell took last time it ran into ``out_dir`` (read before it is replaced)."""
    found = {}
    for cell in cells:
        meta, _ = read_meta(out_dir / cell.id)
        if meta is not None and meta.outcome in ("completed", "timeout") and meta.duration_s:
            found[cell] = meta.duration_s
    return found


def running_status(cell_dir: Path, cache: dict[Path, tuple[int, str]] | None = None) -> str:
    """A running cell's counts so far and its current test, from the events it has streamed.

    With ``cache``, the file is parsed again only when it has grown: the board redraws 4 times a second.
    """
    path = cell_dir / P.EVENTS
    try:
        size = path.stat().st_size
    except OSError:
        return ""
    if cache is not None and (hit := cache.get(path)) is not None and hit[0] == size:
        return hit[1]
    try:
        events = parse_events(read_raw(path))
    except OSError:
        return ""
    results = [r[-1].outcome for r in events.results.values()]
    current = next((n for n in reversed(events.started) if n not in events.results), None)
    failed = sum(o in ("failed", "error") for o in results)
    text = f"{len(results)} done" + (f", {failed} failing" if failed else "")
    text = f"{text} · {current}" if current else text
    if cache is not None:
        cache[path] = (size, text)
    return text


class ProgressBoard:
    """The live view: progress M/N with an ETA, running cells with their current test, the last finished."""

    def __init__(
        self, cells: Sequence[Cell], out_dir: Path, *, run_id: str, runner: str, jobs: int = 1, verbosity: int = 0
    ) -> None:
        # What each finished cell says, printed above the board exactly as the plain log prints it.
        self.log = PlainLog(cells, out_dir, verbosity=verbosity, starts=False)
        self.run_id = run_id
        self.runner = runner
        self.out_dir = out_dir
        self.total = len(cells)
        self.jobs = max(1, jobs)
        self.expected = previous_durations(cells, out_dir)
        self.pending = set(cells)
        self.running: dict[Cell, float] = {}
        self.done: list[Finished] = []
        self.started = time.monotonic()
        self._status: dict[Path, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def eta(self, now: float) -> float | None:
        """Seconds left, from the cells' durations in the previous run; None when none are known."""
        if not self.expected:
            return None
        typical = sum(self.expected.values()) / len(self.expected)
        left = sum(self.expected.get(c, typical) for c in self.pending)
        left += sum(max(0.0, self.expected.get(c, typical) - (now - t)) for c, t in self.running.items())
        return left / self.jobs

    def __call__(self, event: str, cell: Cell, meta: CellMeta | None) -> None:
        with self._lock:
            if event == "start":
                self.pending.discard(cell)
                self.running[cell] = time.monotonic()
            elif event == "done" and meta is not None:
                self.pending.discard(cell)
                self.running.pop(cell, None)
                self.done.append(finished(cell, meta, self.out_dir))
        self.log(event, cell, meta)

    def __rich__(self) -> Group:
        with self._lock:
            now = time.monotonic()
            eta = self.eta(now)
            head = Text.assemble(
                (f"run {self.run_id} ", "bold"),
                f"({self.runner})  ",
                (f"{len(self.done)}/{self.total} done  ", "bold"),
                (f"running {len(self.running)}  ", "cyan"),
                f"{now - self.started:.0f} s" + (f", about {eta:.0f} s left" if eta is not None else ""),
            )
            table = Table(box=None, show_header=False, padding=(0, 1))
            for cell, since in self.running.items():
                status = running_status(self.out_dir / cell.id, self._status)
                table.add_row(Text("running", "cyan"), cell.id, f"{now - since:5.1f} s", status[:100])
            for done in self.done[-MAX_ROWS:]:
                status = done.result.status
                detail = done.counts or done.result.reason
                label = Text(status, CELL[status].style if status in CELL else "")
                if done.result.meta is not None and done.result.meta.cached_from:
                    label.append(" (cached)", "dim")
                elif done.result.meta is not None and done.result.meta.reused:
                    label.append(f" ({done.result.meta.reused} reused)", "dim")
                table.add_row(label, done.cell.id, f"{done.duration_s:5.1f} s", detail[:80])
            return Group(head, table)


@contextlib.contextmanager
def live_progress(
    cells: Sequence[Cell],
    out_dir: Path,
    *,
    run_id: str,
    runner: str,
    jobs: int = 1,
    cached: Sequence[Cell] = (),
    verbosity: int = 0,
) -> Iterator[ProgressBoard]:
    board = ProgressBoard(cells, out_dir, run_id=run_id, runner=runner, jobs=jobs, verbosity=verbosity)
    # Cells whose last result will be reused take no time: the estimate leaves them out.
    for cell in cached:
        board.expected[cell] = 0.0
    console = Console()
    # redirect_stdout: the finished cells' lines (printed to stdout) go above the board.
    with Live(board, console=console, refresh_per_second=4, transient=False, redirect_stdout=True):
        yield board
