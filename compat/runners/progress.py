"""A live view of a run's cells: queued, running (with elapsed time), done."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..matrix import Cell
from ..results.raw import CellMeta

STYLE = {
    "completed": "green",
    "timeout": "bold red",
    "unsupported": "yellow",
    "unavailable": "yellow",
    "error": "bold red",
}
MAX_ROWS = 12


class ProgressBoard:
    def __init__(self, cells: Sequence[Cell], *, run_id: str, runner: str) -> None:
        self.run_id = run_id
        self.runner = runner
        self.queued = list(cells)
        self.running: dict[Cell, float] = {}
        self.done: list[tuple[Cell, CellMeta]] = []
        self._lock = threading.Lock()

    def __call__(self, event: str, cell: Cell, meta: CellMeta | None) -> None:
        with self._lock:
            if event == "start":
                self.queued.remove(cell)
                self.running[cell] = time.monotonic()
            elif event == "done" and meta is not None:
                self.running.pop(cell, None)
                self.done.append((cell, meta))

    def __rich__(self) -> Group:
        with self._lock:
            head = Text.assemble(
                (f"run {self.run_id} ", "bold"),
                f"({self.runner})  ",
                (f"queued {len(self.queued)}  ", "dim"),
                (f"running {len(self.running)}  ", "cyan"),
                (f"done {len(self.done)}", "green"),
            )
            table = Table(box=None, show_header=False, padding=(0, 1))
            now = time.monotonic()
            for cell, since in self.running.items():
                table.add_row(Text("running", "cyan"), cell.id, f"{now - since:5.1f} s")
            for cell, meta in self.done[-MAX_ROWS:]:
                style = STYLE.get(meta.outcome, "")
                detail = meta.reason or (f"pytest exit {meta.exit_code}" if meta.exit_code is not None else "")
                table.add_row(Text(meta.outcome, style), cell.id, f"{meta.duration_s or 0:5.1f} s", detail[:70])
            return Group(head, table)


@contextlib.contextmanager
def live_progress(cells: Sequence[Cell], *, run_id: str, runner: str) -> Iterator[ProgressBoard]:
    board = ProgressBoard(cells, run_id=run_id, runner=runner)
    console = Console(stderr=True)
    with Live(board, console=console, refresh_per_second=4, transient=False):
        yield board
