"""A cell's raw directory -> per-test and per-cell statuses.

The runner writes ``reports/raw/<cell-id>/`` (see docs/DESIGN.md, "A cell's
raw output"); this module is the only reader.  Reading never raises: whatever
is missing or damaged turns the cell into ``error`` with the reason, and every
test that could still be read is kept.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import msgspec

from ..cell import protocol as P
from ..matrix.cells import parse_cell_id

CellOutcome = Literal["completed", "timeout", "unsupported", "unavailable", "excluded", "error"]

TestStatus = Literal[
    "passed",
    "failed",
    "error",
    "xfailed",
    "xpassed",
    "skipped",
    "timeout",
    "not-run",
    "flaky",
]
CellStatus = Literal[
    "ok",
    "failing",
    "timeout",
    "leaked",
    "unsupported",
    "unavailable",
    "excluded",
    "error",
]

# Statuses that make a test "not plainly passing" because something broke.
FAILING: frozenset[str] = frozenset({"failed", "error", "timeout"})
PASSING: frozenset[str] = frozenset({"passed"})

MESSAGE_LIMIT = 4096
RAW_LIMIT = 256 * 1024 * 1024  # no raw file of a real cell comes near this
DUMP_LIMIT = 16384


class CellLimits(msgspec.Struct, frozen=True):
    """The bounds a cell ran under, as recorded in its meta.json."""

    pids: int | None = None
    memory: str | None = None
    cpus: float | None = None
    timeout_s: float | None = None


class CellMeta(msgspec.Struct, frozen=True, kw_only=True):
    cell: str
    python: str
    group: str
    backend: str
    capture: str
    extra: dict[str, str] = {}
    run_id: str
    runner: Literal["docker", "local"]
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
    # What determined this result (see runners/cache.py); None: never reused.
    cache_key: str | None = None
    # Set when this run reused the result of an earlier one: that run's id.
    cached_from: str | None = None
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


class Leaks(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the reaper and the census found after pytest ended."""

    processes: int = 0
    zombies: int = 0
    reaped: int = 0
    shm: int = 0
    sockets: int = 0
    details: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.processes + self.zombies + self.reaped + self.shm + self.sockets

    def summary(self) -> str:
        """``1 process(es) alive after the reaper, 2 shm segment(s)``: what leaked, the counts that are not 0."""
        parts = [
            (self.processes, "process(es) alive after the reaper"),
            (self.zombies, "zombie(s)"),
            (self.reaped, "process(es) reaped"),
            (self.shm, "shm segment(s)"),
            (self.sockets, "socket file(s)"),
        ]
        return ", ".join(f"{n} {what}" for n, what in parts if n)


class Hang(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What kind of hang a timed-out cell was in (compat.cell.forensics), and where it was stuck."""

    kind: str  # await-hang, sigint-starved, blocked-syscall, waiting-for-child, unknown
    detail: str = ""
    child: str = ""  # for waiting-for-child: the child's own class and detail
    stuck: tuple[str, ...] = ()  # leaf trio tasks and the frame each awaits in
    seconds: float | None = None  # how long the forensics step took
    dumps: tuple[str, ...] = ()  # files under the cell's dumps/ directory


class CellResult(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the report needs about one cell."""

    cell: str
    python: str
    group: str
    backend: str
    capture: str
    extra: dict[str, str] = {}
    status: CellStatus
    reason: str = ""
    meta: CellMeta | None = None
    tests: dict[str, TestResult] = {}
    leaks: Leaks = Leaks()
    source: Literal["events", "junit", "none"] = "none"
    notes: tuple[str, ...] = ()
    # The damage that makes the cell an error (also among the notes), if any.
    problem: str | None = None
    hang: Hang | None = None


# --------------------------------------------------------------------------
# events.jsonl


class _Session(msgspec.Struct, tag_field="event", tag="session"):
    t: float | None = None
    python: str | None = None
    pytest: str | None = None
    argv: list[str] = []


class _Start(msgspec.Struct, tag_field="event", tag="start"):
    nodeid: str
    t: float | None = None


class _Result(msgspec.Struct, tag_field="event", tag="result"):
    nodeid: str
    outcome: Literal["passed", "failed", "error", "xfailed", "xpassed", "skipped"]
    when: str | None = None
    reason: str | None = ""
    strict: bool | None = None
    duration: float | None = None
    message: str | None = ""
    # pytest's crash report: the exception's own message, and where it was raised.
    crash: str | None = None
    path: str | None = None
    lineno: int | None = None


class _Note(msgspec.Struct, tag_field="event", tag="note"):
    """Something the plugin had to give up on, for the cell's notes."""

    message: str = ""
    t: float | None = None


class _Collected(msgspec.Struct, tag_field="event", tag="collected"):
    nodeids: list[str] = []
    t: float | None = None


class _Finish(msgspec.Struct, tag_field="event", tag="finish"):
    exitstatus: int | None = None
    t: float | None = None


_Event = _Session | _Start | _Result | _Finish | _Collected | _Note
_event_decoder = msgspec.json.Decoder(_Event)


class Events(msgspec.Struct):
    results: dict[str, list[_Result]]
    started: list[str]
    finished: bool
    damage: str | None
    collected: list[str] | None = None
    notes: list[str] = []


def parse_events(data: bytes) -> Events:
    """Decode events.jsonl, keeping every line that can be read.

    A final line without a newline is a write cut short by a kill: dropped
    quietly.  Any other unreadable line is damage, reported to the caller.
    """
    results: dict[str, list[_Result]] = {}
    started: list[str] = []
    collected: list[str] | None = None
    notes: list[str] = []
    finished = False
    damage = None
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = _event_decoder.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            if number == len(lines) and line.startswith(b'{"event"'):
                continue
            damage = damage or f"events.jsonl line {number}: {exc}"
            continue
        match event:
            case _Start(nodeid=nodeid):
                started.append(nodeid)
            case _Result(nodeid=nodeid):
                results.setdefault(nodeid, []).append(event)
            case _Finish():
                finished = True
            case _Collected(nodeids=nodeids):
                collected = nodeids
            case _Note(message=message):
                notes.append(message)
            case _Session():
                pass
    return Events(results, started, finished, damage, collected, notes)


_STRICT_XPASS = "[XPASS(strict)]"


def _result_from_events(reports: list[_Result]) -> TestResult:
    last = reports[-1]
    earlier_failed = any(r.outcome in ("failed", "error") for r in reports[:-1])
    if earlier_failed and last.outcome == "passed":
        first_failure = next(r for r in reports if r.outcome in ("failed", "error"))
        return TestResult(
            status="flaky",
            reason="failed, then passed on re-run",
            message=_tail(first_failure.message or ""),
            when=first_failure.when,
            duration_s=last.duration,
        )
    if last.outcome == "failed" and (last.message or "").startswith(_STRICT_XPASS):
        # pytest reports a strict xpass as a plain failure; it is an xpass.
        return TestResult(
            status="xpassed",
            strict=True,
            when=last.when,
            duration_s=last.duration,
            reason=(last.message or "")[len(_STRICT_XPASS) :].strip() or last.reason or "",
        )
    return TestResult(
        status=last.outcome,
        reason=last.reason or failure_reason(last.crash, last.message or ""),
        message=_tail(last.message or ""),
        when=last.when,
        strict=last.strict,
        duration_s=last.duration,
    )


REASON_LIMIT = 300


def failure_reason(crash: str | None, message: str, limit: int = REASON_LIMIT) -> str:
    """A failure in one line: the exception's own message (pytest's crash report), trimmed.

    Without a crash report (JUnit, older events), the first "E" line that
    names an exception, else the first "E" line: the last ones are pytest's
    asides ("Use -v to get more diff").
    """
    text = crash
    if not text:
        lines = [ln[1:].strip() for ln in message.splitlines() if ln.startswith("E ") and ln[1:].strip()]
        named = [ln for ln in lines if _names_exception(ln)]
        text = (named or lines or [ln.strip() for ln in message.splitlines() if ln.strip()][-1:] or [""])[0]
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _names_exception(line: str) -> bool:
    head = line.split(":", 1)[0].rsplit(".", maxsplit=1)[-1]
    return head.endswith(("Error", "Exception", "Exit", "Interrupt", "Group")) or head in ("Failed", "assert")


def _tail(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


# --------------------------------------------------------------------------
# junit.xml (fallback: it flattens xpass into pass, so it is second choice)


def parse_junit(data: bytes) -> dict[str, TestResult]:
    root = ET.fromstring(data)
    tests: dict[str, TestResult] = {}
    for case in root.iter("testcase"):
        nodeid = junit_nodeid(case.get("classname", ""), case.get("name", ""))
        tests[nodeid] = _junit_case(case)
    return tests


def junit_nodeid(classname: str, name: str) -> str:
    """Best-effort inverse of pytest's classname mangling."""
    parts = [p for p in classname.split(".") if p]
    classes: list[str] = []
    while parts and parts[-1][:1].isupper():
        classes.insert(0, parts.pop())
    module = "/".join(parts) + ".py" if parts else ""
    return "::".join([p for p in [module, *classes] if p] + [name])


def _junit_case(case: ET.Element) -> TestResult:
    duration = _float(case.get("time"))
    junit_statuses: tuple[tuple[str, TestStatus], ...] = (("failure", "failed"), ("error", "error"))
    for tag, status in junit_statuses:
        node = case.find(tag)
        if node is not None:
            text = (node.get("message") or "") + "\n" + (node.text or "")
            return TestResult(
                status=status, reason=failure_reason(node.get("message"), text),
                message=_tail(text.strip()), duration_s=duration,
            )  # fmt: skip
    skipped = case.find("skipped")
    if skipped is not None:
        message = skipped.get("message") or ""
        if skipped.get("type") == "pytest.xfail":
            return TestResult(status="xfailed", reason=message, duration_s=duration)
        return TestResult(status="skipped", reason=_skip_reason(message), duration_s=duration)
    return TestResult(status="passed", duration_s=duration)


def _skip_reason(message: str) -> str:
    # pytest writes "Skipped: <reason>" for pytest.skip() calls.
    return message.removeprefix("Skipped: ")


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


# --------------------------------------------------------------------------
# leaks: reap.json and census.json


class _Census(msgspec.Struct):
    processes: list[dict[str, object]] = []
    zombies: int = 0


# Keys of `backends-reap --json` whose entries are leaked resources, by kind.
_REAP_KINDS = {
    "processes": "reaped",
    "killed": "reaped",
    "actors": "reaped",
    "pids": "reaped",
    "shm": "shm",
    "segments": "shm",
    "uds": "sockets",
    "sockets": "sockets",
    "run_dirs": "sockets",
}


def parse_reap(data: bytes) -> dict[str, int]:
    """Count what the reaper found, tolerating shapes it may grow into."""
    doc = msgspec.json.decode(data)
    counts = {"reaped": 0, "shm": 0, "sockets": 0}
    if isinstance(doc, list):
        counts["reaped"] = len(doc)
        return counts
    if not isinstance(doc, dict):
        raise ValueError("reap.json is neither an object nor a list")
    for key, value in doc.items():
        kind = _REAP_KINDS.get(key)
        if kind is None:
            continue
        counts[kind] += len(value) if isinstance(value, list | dict) else int(value or 0)
    return counts


def parse_census(data: bytes) -> tuple[int, int, list[str]]:
    """(live processes, zombies, their command lines); zombies are listed too."""
    census = msgspec.json.decode(data, type=_Census)
    live = [p for p in census.processes if p.get("state") != "Z"]
    cmdlines = [f"{p.get('pid')}: {p.get('cmdline', '')}" for p in census.processes]
    return len(live), census.zombies, cmdlines


TREE_HEADER = "--- trio task tree ---"
SYSTEM_TASKS = ("<init>", "<TrioToken.run_sync_soon task>", "trio.")


def read_hang(cell_dir: Path) -> Hang | None:
    """forensics.json and the task trees in dumps/, if the cell was investigated; never raises."""
    try:
        data = json.loads(read_raw(cell_dir / P.FORENSICS))
        found = data["class"]
        kind = str(found["class"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    child = found.get("child") if isinstance(found, dict) else None
    trees = data.get("task_trees") or {}
    silent = sorted(set(trees.get("asked", [])) - set(trees.get("answered", [])))
    detail = str(found.get("detail", ""))
    if silent:
        # A Python handler that never ran: the process's main thread could not run Python.
        detail += f"; no trio task tree came back from pid {', '.join(map(str, silent))}"
    dumps = tuple(sorted(p.name for p in (cell_dir / P.DUMPS).glob("*.txt"))) if (cell_dir / P.DUMPS).is_dir() else ()
    return Hang(
        kind=kind,
        detail=detail[:MESSAGE_LIMIT],
        child=f"{child.get('class')}: {child.get('detail', '')}"[:MESSAGE_LIMIT] if isinstance(child, dict) else "",
        stuck=stuck_tasks(cell_dir / P.DUMPS),
        seconds=data.get("seconds"),
        dumps=dumps,
    )


def stuck_tasks(dumps: Path, limit: int = 5) -> tuple[str, ...]:
    """The leaf tasks of every trio task tree in ``dumps`` (what each one awaits), system tasks left out."""
    found: list[str] = []
    for path in sorted(dumps.glob("*.txt")) if dumps.is_dir() else []:
        try:
            text = read_raw(path).decode(errors="replace")
        except OSError:
            continue
        for tree in text.split(TREE_HEADER)[1:]:
            tasks = [line for line in tree.splitlines() if line.lstrip().startswith("task ")]
            for i, line in enumerate(tasks):
                depth = len(line) - len(line.lstrip())
                has_child = i + 1 < len(tasks) and len(tasks[i + 1]) - len(tasks[i + 1].lstrip()) > depth
                name = line.strip()[len("task ") :].strip("'\"")
                if not has_child and not name.startswith(SYSTEM_TASKS):
                    found.append(f"{path.name}: {line.strip()}")
    return tuple(dict.fromkeys(found))[:limit]


def read_leaks(cell_dir: Path) -> tuple[Leaks, str | None]:
    """Leaks found in a cell, and the damage that hid some of them."""
    fields: dict[str, int] = {}
    details: list[str] = []
    damage = None
    reap = _read_optional(cell_dir / P.REAP)
    if reap is not None:
        try:
            fields.update(parse_reap(reap))
        except (msgspec.DecodeError, ValueError, TypeError, RecursionError) as exc:
            damage = f"reap.json: {exc}"
    census = _read_optional(cell_dir / P.CENSUS)
    if census is not None:
        try:
            fields["processes"], fields["zombies"], cmdlines = parse_census(census)
            details.extend(cmdlines[:20])
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            damage = damage or f"census.json: {exc}"
    return Leaks(**fields, details=tuple(details)), damage


def read_raw(path: Path, limit: int = RAW_LIMIT) -> bytes:
    """A raw file's bytes: regular files only (a FIFO would block for ever), at most ``limit``.

    Raises FileNotFoundError when absent, OSError (with the reason) otherwise.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"{info.st_size} bytes, over the {limit}-byte limit")
        return f.read(limit + 1)


def _read_optional(path: Path) -> bytes | None:
    try:
        return read_raw(path)
    except FileNotFoundError:
        return None
    except OSError:
        return b"\0unreadable"


# --------------------------------------------------------------------------
# dumps


def read_dumps(cell_dir: Path, limit: int = DUMP_LIMIT) -> str:
    """The hang dumps of a cell, concatenated, each clipped to its tail."""
    dump_dir = cell_dir / P.DUMPS
    try:
        files = sorted(p for p in dump_dir.iterdir() if p.is_file())
    except OSError:
        return ""
    parts = []
    for path in files:
        try:
            text = read_raw(path).decode(errors="replace")
        except OSError:
            continue
        if text.strip():
            parts.append(f"--- {path.name}\n{_tail(text, limit // max(1, len(files)))}")
    return "\n".join(parts)


# --------------------------------------------------------------------------
# one cell


def axes_from_id(cell_id: str) -> dict[str, str]:
    parsed = parse_cell_id(cell_id)
    if parsed is None:
        return {"python": "?", "group": "?", "backend": "?", "capture": "?"}
    return {"python": parsed.python, "group": parsed.group, "backend": parsed.backend, "capture": parsed.capture}


def read_meta(cell_dir: Path) -> tuple[CellMeta | None, str | None]:
    try:
        data = read_raw(cell_dir / P.META)
    except FileNotFoundError:
        return None, "meta.json is missing (the runner never finished this cell)"
    except OSError as exc:
        return None, f"meta.json unreadable: {exc.strerror}"
    try:
        return msgspec.json.decode(data, type=CellMeta), None
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return None, f"meta.json is damaged: {exc}"


class _Tests(msgspec.Struct):
    tests: dict[str, TestResult]
    running: list[str]
    source: Literal["events", "junit", "none"]
    damage: str | None
    # What pytest collected in this cell (None: it never got that far, or JUnit).
    collected: list[str] | None = None
    finished: bool = True
    notes: list[str] = []


def read_tests(cell_dir: Path) -> _Tests:
    """The cell's tests from events.jsonl, else JUnit, with what hid some of them."""
    events_bytes = _read_optional(cell_dir / P.EVENTS)
    events_damage = None
    if events_bytes == b"\0unreadable":
        events_damage = f"{P.EVENTS} unreadable"
    elif events_bytes is not None:
        events = parse_events(events_bytes)
        tests = {nodeid: _result_from_events(r) for nodeid, r in events.results.items()}
        running = [n for n in events.started if n not in tests]
        if tests or running or events.collected is not None:
            return _Tests(tests, running, "events", events.damage, events.collected, events.finished, events.notes)
        events_damage = events.damage
    junit_bytes = _read_optional(cell_dir / P.JUNIT)
    if junit_bytes is not None:
        try:
            return _Tests(parse_junit(junit_bytes), [], "junit", events_damage)
        except (ET.ParseError, RecursionError) as exc:
            return _Tests({}, [], "none", f"{P.JUNIT} is damaged: {exc}")
    if events_bytes is not None:
        return _Tests({}, [], "events", events_damage, finished=False)
    return _Tests({}, [], "none", None)


def read_cell(cell_dir: Path) -> CellResult:
    """Read one raw cell directory; never raises."""
    cell_id = cell_dir.name
    meta, meta_problem = read_meta(cell_dir)
    if meta is not None and meta.cell != cell_id:
        meta_problem = f"{P.META} names cell {meta.cell}, but it is in the directory of {cell_id}"
    found = read_tests(cell_dir)
    leaks, leak_damage = read_leaks(cell_dir)
    tests = _mark_running(cell_dir, meta, found.tests, found.running)
    tests = _mark_not_run(meta, tests, found.collected)
    cut_short = None
    if meta is not None and meta.outcome == "completed" and found.source == "events" and not found.finished:
        cut_short = f"{P.EVENTS} ends before pytest's finish event: results after that are missing"
    problem = meta_problem or found.damage or leak_damage or cut_short
    status, reason = cell_status(meta, tests, leaks, found.source, problem)
    if meta is not None and not meta_problem:
        axes = {"python": meta.python, "group": meta.group, "backend": meta.backend, "capture": meta.capture}
        extra = dict(meta.extra)
    else:
        axes, extra = axes_from_id(cell_id), {}
    notes = tuple(n for n in (meta_problem, found.damage, leak_damage, cut_short, *found.notes) if n)
    return CellResult(
        cell=cell_id, **axes, extra=extra, status=status, reason=reason, meta=meta,
        tests=tests, leaks=leaks, source=found.source, notes=notes, problem=problem,
        hang=read_hang(cell_dir) if status == "timeout" else None,
    )  # fmt: skip


def _mark_not_run(
    meta: CellMeta | None, tests: dict[str, TestResult], collected: list[str] | None
) -> dict[str, TestResult]:
    """Tests this cell collected and never finished, when it ended early: exactly those, no others."""
    if meta is None or meta.outcome not in ("timeout", "error") or not collected:
        return tests
    missing = [n for n in collected if n not in tests]
    if not missing:
        return tests
    not_run = TestResult(status="not-run", reason="never reached: the cell ended early")
    return {**tests, **dict.fromkeys(missing, not_run)}


def _mark_running(
    cell_dir: Path, meta: CellMeta | None, tests: dict[str, TestResult], running: list[str]
) -> dict[str, TestResult]:
    """The test running when the cell's bound expired becomes a timeout."""
    hung = set(running)
    if meta is not None and meta.running:
        hung.add(meta.running)
    if not hung:
        return tests
    timed_out = meta is not None and meta.outcome == "timeout"
    dumps = read_dumps(cell_dir) if timed_out else ""
    bound = meta.limits.timeout_s if meta is not None else None
    tests = dict(tests)
    targets = hung - tests.keys()
    if timed_out and meta is not None and meta.running:
        # Its result, if any, came from the forensics step's SIGINT after the bound expired.
        targets.add(meta.running)
    interrupted = meta is not None and meta.interrupted
    for nodeid in sorted(targets):
        if interrupted:
            tests[nodeid] = TestResult(status="not-run", reason="the run was interrupted while it ran")
        elif timed_out:
            reason = (
                f"still running when the cell's {bound:g} s bound expired"
                if bound
                else ("still running when the cell's bound expired")
            )
            tests[nodeid] = TestResult(status="timeout", reason=reason, message=dumps)
        else:
            tests[nodeid] = TestResult(
                status="error",
                reason="started but never finished: the test process died",
                message=meta.reason if meta is not None else "",
            )
    return tests


def cell_status(
    meta: CellMeta | None,
    tests: dict[str, TestResult],
    leaks: Leaks,
    source: str,
    problem: str | None,
) -> tuple[CellStatus, str]:
    """The one status a cell gets, most serious first."""
    if meta is None:
        return "error", problem or "meta.json is missing"
    match meta.outcome:
        case "unsupported" | "unavailable" | "excluded" | "error":
            return meta.outcome, meta.reason
        case "timeout":
            return "timeout", meta.reason or _timeout_reason(meta)
        case "completed":
            pass
    if problem:
        return "error", problem
    if source == "none":
        return "error", "neither events.jsonl nor junit.xml was written"
    failing = sorted(n for n, t in tests.items() if _breaks_run(t))
    if failing:
        return "failing", f"{len(failing)} failing: {failing[0]}" + (" …" if len(failing) > 1 else "")
    if leaks.total:
        return "leaked", _leak_reason(leaks)
    return "ok", ""


def _breaks_run(test: TestResult) -> bool:
    return test.status in FAILING or (test.status == "xpassed" and test.strict is True)


def _timeout_reason(meta: CellMeta) -> str:
    bound = meta.limits.timeout_s
    where = f" in {meta.running}" if meta.running else ""
    return f"cell bound{f' of {bound:g} s' if bound else ''} expired{where}"


def _leak_reason(leaks: Leaks) -> str:
    return "leaked: " + leaks.summary()


def cell_dirs(raw_dir: Path) -> list[Path]:
    """Cell directories under raw_dir; names starting with '_' are not cells."""
    try:
        return sorted(p for p in raw_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except OSError:
        return []


def read_cells(raw_dir: Path) -> list[CellResult]:
    return [read_cell(p) for p in cell_dirs(raw_dir)]


NOT_OK = frozenset({"failing", "timeout", "leaked", "error"})


def failed_cells(raw_dir: Path) -> dict[str, tuple[str, ...]]:
    """Cells that were not ok in ``raw_dir``, each with the tests to run again there.

    The tests are the failing, timed-out and not-run ones; none when the cell
    failed as a whole (an error before any test, a leak): then it all runs again.
    """
    again = {"failed", "error", "timeout", "not-run"}
    return {
        cell.cell: tuple(sorted(n for n, t in cell.tests.items() if t.status in again and "::" in n))
        for cell in read_cells(raw_dir)
        if cell.status in NOT_OK
    }


def with_tests(cell: CellResult, tests: dict[str, TestResult]) -> CellResult:
    """The cell with its tests replaced and its status decided again."""
    status, reason = cell_status(cell.meta, tests, cell.leaks, cell.source, cell.problem)
    return msgspec.structs.replace(cell, tests=tests, status=status, reason=reason)
