"""What a runner needs to know of a cell's files as it finishes: which test was running, what the target said.

Part of the results reader (only ``results`` reads raw directories); the
runners ask it here instead of parsing the files themselves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..cell import protocol as P
from .events import Events, parse_events
from .files import read_raw

REFUSAL_LINES = 6


def _events(out: Path) -> Events | None:
    try:
        return parse_events(read_raw(out / P.EVENTS))
    except OSError:
        return None


def _pending(events: Events) -> list[str]:
    done = events.results.keys() | events.killed.keys() | events.died.keys()
    return [n for n in events.started if n not in done]


def running_test(out: Path) -> str | None:
    """The last test with a ``start`` and no ``result`` (nor a stop or a death) in events.jsonl."""
    events = _events(out)
    pending = _pending(events) if events is not None else []
    return pending[-1] if pending else None


def running_since(out: Path) -> tuple[str, float] | None:
    """The test running now and when it started (the cell's clock is the host's), for the per-test bound."""
    events = _events(out)
    if events is None:
        return None
    pending = _pending(events)
    if not pending or pending[-1] not in events.start_times:
        return None
    return pending[-1], events.start_times[pending[-1]]


def any_test_ran(out: Path) -> bool:
    events = _events(out)
    return events is not None and bool(events.started)


def log_tail(out: Path, lines: int = 3) -> str:
    try:
        text = (out / P.OUTPUT).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


_CRASH_LINE = re.compile(
    r"^(?:INTERNALERROR> \s*)?(?:E\s+)?(?P<line>(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b|ERROR:).*)$"
)


def crash_message(out: Path) -> str:
    """The target's own account of why pytest stopped: its last error line, else the output's tail."""
    try:
        lines = (out / P.OUTPUT).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    found = [m["line"].strip() for line in lines if (m := _CRASH_LINE.match(line.strip()))]
    return found[-1][:500] if found else log_tail(out)


_HEADER = re.compile(r"^=+ test session starts =+$.*?^(?:collect|=)", re.M | re.S)


def refusal_reason(out: Path, patterns: Sequence[str]) -> str | None:
    """The target's own refusal message: the ``reason`` group, else the match and what follows.

    pytest's report header is left out: what a plugin says there about the backends it knows (one
    that is unavailable here, while this cell runs another) is information, not this cell's refusal.
    """
    try:
        text = _HEADER.sub("", (out / P.OUTPUT).read_text(errors="replace"))
    except OSError:
        return None
    for pattern in patterns:
        match = re.search(pattern, text, re.M)
        if match is None:
            continue
        reason = match.groupdict().get("reason")
        if reason and reason.strip():
            return reason.strip()
        following = text[match.start() :].strip().splitlines()[:REFUSAL_LINES]
        return " ".join(line.strip() for line in following if line.strip())
    return None
