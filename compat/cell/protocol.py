"""Everything that crosses the cell boundary: modules, files, environment, tags, and their payloads.

Imported by the in-cell code (stdlib only) and by the host, so neither
re-spells a string or a field the other reads. Payloads are ``TypedDict``s
(the cell side stays stdlib-only); the host decodes them into its own
structs, and a test holds the two to each other.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

ENTRY_MODULE = "compat.cell.entry"
PLUGIN_MODULE = "compat.cell.plugin"

# Files of a cell's raw directory.
EVENTS = "events.jsonl"
JUNIT = "junit.xml"
OUTPUT = "output.log"
REAP = "reap.json"
CENSUS = "census.json"
DUMPS = "dumps"
META = "meta.json"
SIGNALS = "signals.json"  # who was asked for a stack dump at a timeout, and who could not be
FORENSICS = "forensics.json"  # what kind of hang a test was in (compat.cell.forensics), in its hang directory
# One directory per investigated hang (a test past the per-test bound, or the cell's): hangs/<NN>/, holding
# forensics.json, stacks.json and stacks.txt (every thread of every interpreter, read from outside).
HANGS = "hangs"
STACKS = "stacks.json"
STACKS_TEXT = "stacks.txt"
# Where the entry keeps the pid of the pytest process it is running (for `stop-test`).
# "PID SESSION" of the pytest process running now (SESSION: 0, then each resume's number).
PYTEST_PID = ".pytest.pid"
# ``stop-test``'s answer for one session (".stopped-SESSION"): the entry resumes only after it.
STOPPED = ".stopped-{session}"
STOP_WAIT_S = 120.0
TASKS_SUFFIX = "-tasks"  # dumps/<title>-tasks-<pid>.txt: a process's trio task tree
TREE_HEADER = "--- trio task tree ---"  # the line a task tree starts with, in any dump file

# Beside the staged in-cell package: the target's files a cell copies (NUL-separated, relative),
# and the runner's lifeline (EntrySpec.lifeline).
FILES_LIST = "target-files"
LIFELINE = "lifeline"

# Environment the entry gives pytest (and the plugin reads).
ENV_EVENTS = "COMPAT_EVENTS_FILE"
# The target's own dump files (JSON list of absolute paths with {pid}): kept with a hang's evidence.
ENV_TARGET_DUMPS = "COMPAT_TARGET_DUMPS"
TARGET_DUMP_PREFIX = "target-"  # hangs/<NN>/target-<file name>
TARGET_DUMP_LIMIT = 1 << 20  # bytes of each, its tail
ENV_PER_TEST = "COMPAT_PER_TEST_TIMEOUT"
ENV_SCOPE = "COMPAT_SCOPE"  # "all": every process is the cell's (a container); "session": ours only
# A file of node ids (one a line): a resumed pytest runs only these (the ones not run yet).
ENV_ONLY = "COMPAT_ONLY_FILE"
# deps/<pid>.json: what each test module depends on (compat.cell.deps), one file per pytest process.
ENV_DEPS_DIR = "COMPAT_DEPS_DIR"
DEPS_DIR = "deps"
DEPS_FORMAT = 1
# The modules (node ids' file parts) a re-run leaves out: their results are reused (REUSED).
ENV_REUSE = "COMPAT_REUSE_FILE"
REUSE_LIST = ".reuse.txt"
REUSED = "reused.json"
# The target's files and their digests when the cell ran (written by the runner): what changed since.
INPUTS = "inputs.json"
ENV_DUMP_DIR = "BACKENDS_DUMP_DIR"
# Where the target's wheel was installed in this cell: a .pth file in every cell
# environment (TARGET_PTH) puts it on sys.path of every interpreter started there,
# whatever PYTHONPATH a test gives its children, as site-packages would be.
ENV_TARGET_SITE = "COMPAT_TARGET_SITE"
TARGET_PTH = "_compat_target.pth"
TARGET_PTH_LINE = (
    f"import os, sys; p = os.environ.get({ENV_TARGET_SITE!r}); "
    "p and os.path.isdir(p) and p not in sys.path and sys.path.append(p)"
)

# Tagged lines on the entry's stdout: "<TAG> <json>".
TAG_ENV = "COMPAT-ENV"
TAG_SETUP = "COMPAT-SETUP"
TAG_PYTEST = "COMPAT-PYTEST"
TAG_DONE = "COMPAT-DONE"
TAGS = (TAG_ENV, TAG_SETUP, TAG_PYTEST, TAG_DONE)

EXPIRED = 124  # what timeout(1) exits with: the cell outlived its runner's bound


class EntrySpec(TypedDict):
    """What ``python -m compat.cell.entry run|exec|shell SPEC`` is told (``runners.base.entry_spec``)."""

    out: str
    cwd: str
    pytest: list[str]
    per_test_timeout: float
    # Seconds after which the cell stops itself: its runner is gone.
    expire_after: float
    env: dict[str, str]
    # A fresh writable HOME and XDG dirs on the cell's tmpfs (containers).
    fresh_dirs: bool
    reaper: str
    # pytest's PYTHONPATH, in order (the staged package first).
    pythonpath: list[str]
    # Copy the target from this read-only mount into ``cwd`` first (the files FILES_LIST names).
    source: NotRequired[str]
    files: NotRequired[str]
    # Install these wheels (the target, built on the host) into the cell's tmpfs first.
    wheels: NotRequired[str]
    # New pytest processes the cell may start for the tests not run yet, after one was
    # stopped at the per-test bound or died (0: none).
    restarts: NotRequired[int]
    # A file the runner holds an exclusive flock on while it lives (LIFELINE in the staged
    # directory): the cell stops itself within a second of that lock's release.
    lifeline: NotRequired[str]
    # Test modules (node ids' file parts) this run leaves out: their last results are reused.
    reuse: NotRequired[list[str]]


class EnvPayload(TypedDict):
    """``COMPAT-ENV``: the cell's interpreter and installed distributions."""

    python: str
    packages: dict[str, str]


class SetupPayload(TypedDict):
    """``COMPAT-SETUP``: the steps before pytest (copy, install); ``failed`` names the one that failed."""

    copied: int
    installed: list[str]
    failed: NotRequired[str]
    detail: NotRequired[str]


class PytestPayload(TypedDict):
    """``COMPAT-PYTEST``: the last pytest process's exit code, the wall time of them all, and how many
    were started after the first (to run what a stopped or dead one left)."""

    exit: int
    duration: float
    restarts: int


class DonePayload(TypedDict):
    """``COMPAT-DONE``: the reaper's exit code (None: the target has none)."""

    reap_exit: int | None


# -- events.jsonl: one JSON object per line, each with "event" naming its kind --------------------

Outcome = Literal["passed", "failed", "error", "xfailed", "xpassed", "skipped"]


class SessionEvent(TypedDict):
    event: Literal["session"]
    t: float
    python: str
    pytest: str
    argv: list[str]
    # The per-test bound the runner enforces (seconds; None: only the cell's).
    per_test_timeout: float | None


class CollectedEvent(TypedDict):
    """Exactly what this cell may still owe a result for (``not-run``)."""

    event: Literal["collected"]
    nodeids: list[str]
    t: float


class StartEvent(TypedDict):
    event: Literal["start"]
    nodeid: str
    t: float


class ResultEvent(TypedDict):
    """Once per test (``when`` "collect": a collector that failed or was skipped at import)."""

    event: Literal["result"]
    nodeid: str
    outcome: Outcome
    when: str
    reason: str
    strict: bool | None
    duration: float
    # The last 4 KiB of the failure's text.
    message: str
    # pytest's crash report: the exception's own message, and where it was raised.
    crash: NotRequired[str]
    path: NotRequired[str]
    lineno: NotRequired[int | None]
    # The test ran past the per-test bound (recorded; the runner enforces it).
    overtime: NotRequired[bool]
    # Failed attempts before this result (pytest-rerunfailures and the like).
    reruns: NotRequired[int]
    # The plugin that decided the outcome, when it was not pytest itself ("timeout": pytest-timeout).
    by: NotRequired[str]


class NoteEvent(TypedDict):
    """Something the plugin had to give up on, for the cell's notes."""

    event: Literal["note"]
    message: str
    t: float


class FinishEvent(TypedDict):
    event: Literal["finish"]
    exitstatus: int
    t: float


class KilledEvent(TypedDict):
    """Written by the runner before it investigates a test past the per-test bound and stops it."""

    event: Literal["killed"]
    nodeid: str
    bound: float
    # The pytest session the test ran in (PYTEST_PID's SESSION; -1: none was running).
    session: int
    # The hang's directory under hangs/ (its forensics and stacks).
    hang: str
    t: float


class DiedEvent(TypedDict):
    """Written by the entry: pytest ended (its own exit, a signal, a crash) while this test ran."""

    event: Literal["died"]
    nodeid: str
    exitcode: int
    # The signal's name when a signal ended it ("SIGSEGV"), else "".
    signal: str
    # The target's own last words (a "+++ Timeout +++" banner, a fatal error), from the output.
    cause: str
    t: float


class ResumeEvent(TypedDict):
    """Written by the entry before a new pytest process runs the tests not run yet."""

    event: Literal["resume"]
    restart: int
    nodeids: list[str]
    t: float


LeakKind = Literal["thread", "subinterpreter", "shm"]


class LeakEvent(TypedDict):
    """Written by the plugin at the session's end: a test left this alive, and it still is."""

    event: Literal["leak"]
    nodeid: str
    kind: LeakKind
    # "thread 'worker' running Pool._loop", "sub-interpreter 3", "/dev/shm/psm_1234".
    what: str
    t: float


Event = (
    SessionEvent | CollectedEvent | StartEvent | ResultEvent | NoteEvent | FinishEvent
    | KilledEvent | DiedEvent | ResumeEvent | LeakEvent
)  # fmt: skip
EVENT_KINDS = {
    "session": SessionEvent,
    "collected": CollectedEvent,
    "start": StartEvent,
    "result": ResultEvent,
    "note": NoteEvent,
    "finish": FinishEvent,
    "killed": KilledEvent,
    "died": DiedEvent,
    "resume": ResumeEvent,
    "leak": LeakEvent,
}


# -- the JSON files the in-cell entry writes ------------------------------------------------


class ProcessInfo(TypedDict):
    pid: int
    ppid: int
    state: str
    cmdline: str


class Census(TypedDict):
    """census.json: what still lived in the cell after the reaper."""

    processes: list[ProcessInfo]
    zombies: int
    # /dev/shm segments of the cell's user that appeared while it ran and are still there.
    shm: NotRequired[list[str]]


class Deps(TypedDict):
    """deps/<pid>.json: target-relative file -> sha256, for the session and for each test module."""

    format: int
    session: dict[str, str]
    modules: dict[str, dict[str, str]]


class Signals(TypedDict):
    """signals.json: who was asked for a stack dump at a timeout, and who had no handler for it."""

    signalled: list[ProcessInfo]
    no_handler: list[ProcessInfo]


# -- a hang's forensics (hangs/<NN>/forensics.json) -------------------------------------------

# What kind of hang: a trio loop stuck on an await (it answers SIGINT); a process without a trio
# loop that answers SIGINT (a plain sleep or wait); SIGINT delivered and nothing happening (the
# main thread cannot run Python: another thread holds the GIL); a call on a descriptor; a wait
# for a child (classified in turn); nothing /proc could tell.
HangClass = Literal[
    "await-hang", "interruptible-wait", "sigint-starved", "blocked-syscall", "waiting-for-child",
    "pids-exhausted", "unknown",
]  # fmt: skip


# The class of one process, with its evidence ("class" is a keyword: the functional form names it).
HangFound = TypedDict(
    "HangFound",
    {
        "class": str,  # a HangClass
        "detail": str,
        "pid": NotRequired[int],
        "cmdline": NotRequired[str],
        "main_thread": NotRequired[dict[str, object]],
        "child": NotRequired["HangFound"],
        "busy_threads": NotRequired[list[dict[str, object]]],
    },
)


class TaskTrees(TypedDict):
    asked: list[int]
    answered: list[int]


# hangs/<NN>/forensics.json: the class of the pytest process, and what every process was doing.
Forensics = TypedDict(
    "Forensics",
    {
        "nodeid": str,
        # What started the investigation: "per-test" (the test ran past it) or "per-cell".
        "bound": str,
        "class": HangFound,
        "processes": dict[str, dict[str, object]],
        "task_trees": TaskTrees,
        # None: the step did not finish (the runner wrote this file for it).
        "seconds": float | None,
    },
)
