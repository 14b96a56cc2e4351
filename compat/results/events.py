"""events.jsonl, as the cell's plugin streams it, into one result per test.

The payloads are ``compat.cell.protocol``'s; this is their decoder.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from .schema import TestResult

MESSAGE_LIMIT = 4096


class _Session(msgspec.Struct, tag_field="event", tag="session"):
    t: float | None = None
    python: str | None = None
    pytest: str | None = None
    argv: list[str] = []
    per_test_timeout: float | None = None


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
    overtime: bool = False
    reruns: int = 0
    by: str = ""


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


class _Killed(msgspec.Struct, tag_field="event", tag="killed"):
    nodeid: str
    bound: float = 0.0
    hang: str = ""
    session: int = -1
    t: float | None = None


class _Died(msgspec.Struct, tag_field="event", tag="died"):
    nodeid: str
    exitcode: int = 0
    signal: str = ""
    cause: str = ""
    t: float | None = None


class _Resume(msgspec.Struct, tag_field="event", tag="resume"):
    restart: int = 0
    nodeids: list[str] = []
    t: float | None = None


class _Leak(msgspec.Struct, tag_field="event", tag="leak"):
    nodeid: str
    kind: str
    what: str = ""
    t: float | None = None


_Event = _Session | _Start | _Result | _Finish | _Collected | _Note | _Killed | _Died | _Resume | _Leak
_event_decoder = msgspec.json.Decoder(_Event)


class Events(msgspec.Struct):
    results: dict[str, list[_Result]] = {}
    started: list[str] = []
    finished: bool = False
    damage: str | None = None
    # What the cell's first pytest collected: what it may still owe a result for.
    collected: list[str] | None = None
    notes: list[str] = []
    # Tests the runner stopped at the per-test bound, and tests whose pytest process died under them.
    killed: dict[str, _Killed] = {}
    died: dict[str, _Died] = {}
    # The pytest process (0: the first, n: the n-th restart) each result came from.
    session_of: dict[str, int] = {}
    restarts: int = 0
    # When each test started (the last start), for the runner's per-test bound.
    start_times: dict[str, float] = {}
    # The runner stopped a test of the last pytest process: its missing finish is the runner's doing.
    stopped: bool = False
    # What tests left alive that still was at the session's end (kind, what), per test.
    leaks: dict[str, list[tuple[str, str]]] = {}

    def add(self, event: _Event) -> None:
        self._add(_stable(event))

    def _add(self, event: _Event) -> None:
        match event:
            case _Start(nodeid=nodeid, t=t):
                self.started.append(nodeid)
                if t is not None:
                    self.start_times[nodeid] = t
            case _Result(nodeid=nodeid):
                self.results.setdefault(nodeid, []).append(event)
                self.session_of[nodeid] = self.restarts
            case _Finish():
                self.finished = True
            case _Collected(nodeids=nodeids):
                # A resumed session collects only what is left; the first one says what the cell owes.
                self.collected = nodeids if self.collected is None else self.collected
            case _Note(message=message):
                self.notes.append(message)
            case _Killed(nodeid=nodeid):
                self.killed[nodeid] = event
                self.stopped = True
            case _Died(nodeid=nodeid):
                self.died[nodeid] = event
            case _Resume(restart=restart):
                self.restarts = restart
            case _Leak(nodeid=nodeid, kind=kind, what=what):
                self.leaks.setdefault(nodeid, []).append((kind, what))
            case _Session():
                self.finished = False
                self.stopped = False


def parse_events(data: bytes) -> Events:
    """Decode events.jsonl, keeping every line that can be read.

    A final line without a newline is a write cut short by a kill: dropped
    quietly.  Any other unreadable line is damage, reported to the caller.
    """
    found = Events()
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = _event_decoder.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            if number == len(lines) and line.startswith(b'{"event"'):
                continue
            found.damage = found.damage or f"events.jsonl line {number}: {exc}"
            continue
        found.add(event)
    return found


_STRICT_XPASS = "[XPASS(strict)]"


def result_from_events(reports: list[_Result]) -> TestResult:
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
    if last.reruns and last.outcome == "passed":
        # A re-run plugin of the target's (pytest-rerunfailures) retried it in the same process.
        return TestResult(
            status="flaky",
            reason=f"failed {last.reruns} time(s), then passed when the target's re-run plugin retried it",
            when=last.when,
            duration_s=last.duration,
        )
    if last.outcome == "failed" and last.by == "timeout":
        # pytest-timeout, which the target installed, ended it at its own bound.
        return TestResult(
            status="timeout",
            reason=f"pytest-timeout: {failure_reason(last.crash, last.message or '')}",
            message=_tail(last.message or ""),
            when=last.when,
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
    line = " ".join(_NOISE.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


ADDRESS = " at 0x"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _stable(event: _Event) -> _Event:
    if isinstance(nodeid := getattr(event, "nodeid", None), str) and ADDRESS in nodeid:
        return msgspec.structs.replace(event, nodeid=stable_nodeid(nodeid))
    if isinstance(event, _Collected | _Resume) and any(ADDRESS in n for n in event.nodeids):
        return msgspec.structs.replace(event, nodeids=[stable_nodeid(n) for n in event.nodeids])
    return event


def stable_nodeid(nodeid: str) -> str:
    """A node id whose parameter ids name an object by its address (``<function f at 0x7f9b...>``,
    a new one in every process) made the same in every cell: ``<function f at 0x…>``."""
    return _ADDRESS.sub(" at 0x…", nodeid)


# What pytest and exception groups add to a message that says nothing about this failure.
_NOISE = re.compile(
    r"\(\s*\^+\s*this exc was collapsed from a group\s*\^+\s*\)"  # tractor's collapsed-group note
    r"|\s*Use -v to get more diff\.?"
    r"|\s*Use -vv to get more diff\.?"
    r"|\s*Omitting \d+ identical items, use -vv to show"
)


def _names_exception(line: str) -> bool:
    head = line.split(":", 1)[0].rsplit(".", maxsplit=1)[-1]
    return head.endswith(("Error", "Exception", "Exit", "Interrupt", "Group")) or head in ("Failed", "assert")


def _tail(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]
