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
FORENSICS = "forensics.json"  # what kind of hang a timed-out cell was in (compat.cell.forensics)
TASKS_SUFFIX = "-tasks"  # dumps/<title>-tasks-<pid>.txt: a process's trio task tree
TREE_HEADER = "--- trio task tree ---"  # the line a task tree starts with, in any dump file

# Beside the staged in-cell package: the target's files a cell copies (NUL-separated, relative).
FILES_LIST = "target-files"

# Environment the entry gives pytest (and the plugin reads).
ENV_EVENTS = "COMPAT_EVENTS_FILE"
ENV_PER_TEST = "COMPAT_PER_TEST_TIMEOUT"
ENV_SCOPE = "COMPAT_SCOPE"  # "all": every process is the cell's (a container); "session": ours only
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
    """``COMPAT-PYTEST``: pytest's exit code and wall time."""

    exit: int
    duration: float


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


Event = SessionEvent | CollectedEvent | StartEvent | ResultEvent | NoteEvent | FinishEvent
EVENT_KINDS = {
    "session": SessionEvent,
    "collected": CollectedEvent,
    "start": StartEvent,
    "result": ResultEvent,
    "note": NoteEvent,
    "finish": FinishEvent,
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


class Signals(TypedDict):
    """signals.json: who was asked for a stack dump at a timeout, and who had no handler for it."""

    signalled: list[ProcessInfo]
    no_handler: list[ProcessInfo]
