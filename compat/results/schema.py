"""The shapes of a cell's results as the host reads them: what ``meta.json`` holds, and what a cell became.

Written by the runners (``CellMeta``), read back by the reader
(``results.raw``); both import this module, never each other.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ..cell import protocol as P
from ..matrix.cells import CellAxes
from .status import CellStatus, TestStatus

CellOutcome = Literal["completed", "timeout", "unsupported", "unavailable", "excluded", "error"]


class CellLimits(msgspec.Struct, frozen=True):
    """The bounds a cell ran under, as recorded in its meta.json."""

    pids: int | None = None
    memory: str | None = None
    cpus: float | None = None
    timeout_s: float | None = None


# Where a cell ran; the runners' table (compat.runners.kinds.RUNNERS) describes each.
RunnerKind = Literal["docker", "local"]


class CellMeta(CellAxes, msgspec.Struct, frozen=True, kw_only=True):
    cell: str
    run_id: str
    runner: RunnerKind
    outcome: CellOutcome
    reason: str = ""
    running: str | None = None
    exit_code: int | None = None
    image: str | None = None
    python_version: str | None = None
    packages: dict[str, str] = {}
    started: float | None = None
    finished: float | None = None
    duration_s: float | None = None
    pytest_duration_s: float | None = None
    limits: CellLimits = CellLimits()
    # The pytest arguments and test ids that narrowed this cell's run (a partial run's).
    selection: tuple[str, ...] = ()
    # The run's own pytest arguments (after `--`): `compat repro` replays them.
    pytest_args: tuple[str, ...] = ()
    # What determined this result (see runners/cache.py); None: never reused.
    cache_key: str | None = None
    # Set when this run reused the result of an earlier one: that run's id.
    cached_from: str | None = None
    # Everything but the target's files (runners/incremental.py): an unchanged one allows a re-run
    # to leave out the modules an edit cannot affect.
    context_key: str | None = None
    # Tests whose results this run took over from earlier runs (their modules unchanged), and from which.
    reused: int = 0
    reused_from: tuple[str, ...] = ()
    # The run was stopped (Ctrl-C, SIGTERM) while this cell ran.
    interrupted: bool = False
    version: int = 1


class TestResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One test in one cell."""

    __test__ = False  # not a pytest test class, whatever its name

    status: TestStatus
    reason: str = ""
    message: str = ""
    when: str | None = None
    strict: bool | None = None
    duration_s: float | None = None
    # The pytest process it ran in: 0 the first, n the n-th started after one was stopped or died.
    session: int = 0
    # Its hang's directory (hangs/<NN>), when the runner stopped it at the per-test bound.
    hang: str = ""
    # What it left alive that still was at the session's end: "thread 'w' running f", "/dev/shm/x".
    leaked: tuple[str, ...] = ()
    # The run this result was taken from, when a later run reused it (its module unchanged).
    reused_from: str = ""


class Leaks(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the reaper and the census found after pytest ended, and what tests left alive in it."""

    processes: int = 0
    zombies: int = 0
    reaped: int = 0
    shm: int = 0
    sockets: int = 0
    threads: int = 0
    subinterpreters: int = 0
    details: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return (
            self.processes + self.zombies + self.reaped + self.shm + self.sockets + self.threads + self.subinterpreters
        )

    def summary(self) -> str:
        """``1 process(es) alive after the reaper, 2 shm segment(s)``: what leaked, the counts that are not 0."""
        parts = [
            (self.processes, "process(es) alive after the reaper"),
            (self.zombies, "zombie(s)"),
            (self.reaped, "process(es) reaped"),
            (self.shm, "shm segment(s)"),
            (self.sockets, "socket file(s)"),
            (self.threads, "thread(s) left running by a test"),
            (self.subinterpreters, "sub-interpreter(s) left by a test"),
        ]
        return ", ".join(f"{n} {what}" for n, what in parts if n)


# -- stacks read from outside (runners.stacks), hangs/<NN>/stacks.json --------------------------


class Frame(msgspec.Struct, frozen=True):
    function: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.function} ({self.file}:{self.line})"


class InterpreterStack(msgspec.Struct, frozen=True, kw_only=True):
    interpreter: int  # 0: the main interpreter
    frames: tuple[Frame, ...] = ()  # innermost last


class ThreadStack(msgspec.Struct, frozen=True, kw_only=True):
    tid: int
    name: str = ""
    gil: bool = False
    active: bool = False
    interpreters: tuple[InterpreterStack, ...] = ()


class ProcessStacks(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    cmdline: str = ""
    threads: tuple[ThreadStack, ...] = ()
    # Why its stacks could not be read (ptrace refused, not a Python process...).
    problem: str = ""


class Stacks(msgspec.Struct, frozen=True, kw_only=True):
    processes: tuple[ProcessStacks, ...] = ()
    problem: str = ""
    seconds: float | None = None


# The classes compat.cell.forensics (and the runner, when nothing can start in a cell) name.
HangClass = P.HangClass


class StuckFrame(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where one thread of one process was, in one interpreter: what the report names."""

    pid: int
    process: str
    thread: str
    interpreter: int = 0
    gil: bool = False
    frame: str


class Hang(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One investigated hang (a test past the per-test bound, or the cell's): its class and evidence."""

    kind: HangClass
    nodeid: str = ""
    # per-test: the runner stopped the test and the cell went on; per-cell: the cell's bound ended it.
    bound: str = ""
    detail: str = ""
    child: str = ""  # for waiting-for-child: the child's own class and detail
    stuck: tuple[str, ...] = ()  # leaf trio tasks and the frame each awaits in
    # Per process and interpreter: the main thread's and the GIL holder's innermost frame of their own code.
    frames: tuple[StuckFrame, ...] = ()
    stacks_problem: str = ""
    seconds: float | None = None  # how long the forensics step took
    # Files of the evidence, relative to the cell's directory (hangs/<NN>/..., dumps/...).
    files: tuple[str, ...] = ()


class CellResult(CellAxes, msgspec.Struct, frozen=True, kw_only=True):
    """Everything the report needs about one cell."""

    cell: str
    status: CellStatus
    reason: str = ""
    meta: CellMeta | None = None
    tests: dict[str, TestResult] = {}
    leaks: Leaks = Leaks()
    source: Literal["events", "junit", "none"] = "none"
    notes: tuple[str, ...] = ()
    # The damage that makes the cell an error (also among the notes), if any.
    problem: str | None = None
    # Every hang investigated in it: tests stopped at the per-test bound, and the cell's own bound.
    hangs: tuple[Hang, ...] = ()
    # New pytest processes it started to run what a stopped or dead one had not (TestResult.session).
    restarts: int = 0
