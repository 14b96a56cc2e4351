"""The pytest processes of one cell: run one, stop a test in it, and resume the tests not run yet.

Stdlib only. One hang costs one test: when the runner stops a test at the
per-test bound (``stop-test``: a ``killed`` event, then the test's whole
process tree is killed), or when pytest ends while a test runs (its own
``os._exit``, a signal, a crash: a ``died`` event with the target's last
words), a new pytest process runs what the cell collected and has not
finished, within the cell's bounds and ``restarts``. Every session appends
to the same events.jsonl, so the reader sees one cell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import protocol as P

CAUSE_LINES = 6
TESTS_FAILED = 1  # pytest.ExitCode.TESTS_FAILED, without importing pytest here
# The sessions of the pytest processes this entry started (each its own): the cell's, without a PID namespace.
STARTED: list[int] = []
# Lines in which a target or the interpreter says why a process is going away.
_CAUSE = re.compile(r"\+{3} ?Timeout ?\+{3}|Fatal Python error|Segmentation fault|Aborted|Killed|Timeout|exit", re.I)


def append_event(out: Path, event: P.Event) -> None:
    with open(out / P.EVENTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def events(out: Path) -> list[dict[str, Any]]:
    try:
        lines = (out / P.EVENTS).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a kill
    return found


class State:
    """What the events say so far: what was collected, what finished, what ran when pytest stopped."""

    def __init__(self, seen: list[dict[str, Any]]) -> None:
        self.collected: list[str] | None = None
        self.done: set[str] = set()
        self.running: str | None = None
        # The runner stopped a test of the last session: its end is the runner's, not the target's.
        self.stopped = False
        finish = False
        for event in seen:
            kind = event.get("event")
            if kind == "collected" and self.collected is None:
                self.collected = list(event.get("nodeids") or [])
            elif kind == "session":
                finish, self.stopped, self.running = False, False, None
            elif kind == "start":
                self.running = event.get("nodeid")
            elif kind in ("result", "killed", "died"):
                self.done.add(str(event.get("nodeid")))
                self.stopped = self.stopped or kind == "killed"
                if self.running == event.get("nodeid"):
                    self.running = None
            elif kind == "finish":
                finish = True
        # A session the runner stopped a test in did not finish the cell, whatever pytest then said
        # (the hang probe's SIGINT may let it end its session on its own).
        self.finished = finish and not self.stopped

    def remaining(self) -> list[str]:
        """Collected, not finished: a test the runner's stop cut short (not the one it stopped) runs again."""
        return [n for n in self.collected or [] if n not in self.done]


def _cause(out: Path, offset: int) -> str:
    """The target's last words in this session's output: a banner or a fatal error, else its tail."""
    try:
        with open(out / P.OUTPUT, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    named = [line for line in lines if _CAUSE.search(line)]
    chosen = named[-CAUSE_LINES:] if named else lines[-CAUSE_LINES:]
    return " | ".join(chosen)[:1000]


def _signal_name(code: int) -> str:
    if code >= 0:
        return ""
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_sessions(spec: P.EntrySpec, out: Path, env: dict[str, str]) -> tuple[int, float, int]:
    """pytest, then as many resumed sessions as the cell needs and may have: (exit code, seconds, restarts)."""
    started = time.monotonic()
    deadline = started + float(spec.get("expire_after") or 86_400)
    budget = int(spec.get("restarts") or 0)
    argv = [sys.executable, "-m", "pytest", *spec["pytest"]]
    restarts, session_env = 0, dict(env)
    while True:
        offset = (out / P.OUTPUT).stat().st_size if (out / P.OUTPUT).exists() else 0
        code = _one_session(argv, spec, out, session_env, deadline, restarts)
        if code == P.EXPIRED:
            return code, time.monotonic() - started, restarts
        state = State(events(out))
        if state.stopped:
            # The runner's stop-test may still be on its way: a new session must not be what it kills.
            _wait_for(out / P.STOPPED.format(session=restarts), min(P.STOP_WAIT_S, deadline - time.monotonic()))
            # However it ended (our SIGKILL, the probe's SIGINT), pytest's word for it is: a test failed.
            code = TESTS_FAILED
        if state.finished or (state.running is None and state.collected is None):
            return code, time.monotonic() - started, restarts
        if state.running is not None and not state.stopped:
            # Not stopped by the runner (that writes `killed` first): the process ended under the test.
            append_event(out, {
                "event": "died", "nodeid": state.running, "exitcode": code, "signal": _signal_name(code),
                "cause": _cause(out, offset), "t": time.time(),
            })  # fmt: skip
        remaining = State(events(out)).remaining()
        if not remaining or restarts >= budget or time.monotonic() >= deadline:
            return code, time.monotonic() - started, restarts
        restarts += 1
        append_event(out, {"event": "resume", "restart": restarts, "nodeids": remaining, "t": time.time()})
        only = out / f".only-{restarts}.txt"
        only.write_text("\n".join(remaining) + "\n")
        session_env = {**env, P.ENV_ONLY: str(only)}


def _wait_for(path: Path, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _one_session(
    argv: list[str], spec: P.EntrySpec, out: Path, env: dict[str, str], deadline: float, session: int
) -> int:
    with open(out / P.OUTPUT, "ab") as log:
        # Its own session: `stop-test` kills the test's process tree without touching the entry.
        proc = subprocess.Popen(
            argv, cwd=spec["cwd"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        (out / P.PYTEST_PID).write_text(f"{proc.pid} {session}")
        STARTED.append(proc.pid)
        lifeline = Lifeline(spec.get("lifeline"))
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    return proc.wait(timeout=min(left, LIFELINE_POLL_S))
                except subprocess.TimeoutExpired:
                    pass
                if lifeline.released():
                    why = "its runner is gone (the lifeline lock was released); stopped"
                    break
            else:
                why = f"the cell outlived its runner's bound; stopped after {spec['expire_after']} s"
            # In a container our exit stops everything else.
            kill_tree(proc.pid)
            proc.wait()
            log.write(f"\ncompat: {why}\n".encode())
            return P.EXPIRED
        finally:
            lifeline.close()
            (out / P.PYTEST_PID).unlink(missing_ok=True)


LIFELINE_POLL_S = 1.0


class Lifeline:
    """The runner's lock on a file (``EntrySpec.lifeline``): released when the runner dies, however.

    A shared lock that can be taken means the exclusive one is gone. No file, no check (a cell of a
    runner without one; the expiry bound still holds).
    """

    def __init__(self, path: str | None) -> None:
        self.fd: int | None = None
        if path:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def released(self) -> bool:
        if self.fd is None:
            return False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def inner_pid(pid: int) -> int:
    """``pid`` as the innermost PID namespace it is in numbers it (a cell's own numbering: the one
    its dump files, task trees and both stack tools use), from /proc's NSpid."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return pid
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            fields = line.split()[1:]
            return int(fields[-1]) if fields else pid
    return pid


def _ppids() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = int(fields[1])
    return found


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    parents = _ppids()
    found, frontier = [root], [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in found]
        found += kids
        frontier = kids
    return found


def kill_tree(root: int) -> list[int]:
    """SIGKILL ``root``'s process group and every process below it; what was signalled."""
    with_group = set(tree(root))
    with contextlib.suppress(OSError):  # gone already, or its group is
        os.killpg(root, signal.SIGKILL)
    for pid in sorted(with_group):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    return sorted(with_group)


def running_pytest(out: Path) -> tuple[int, int] | None:
    """(pid, session) of the pytest process running now, as the entry numbers it."""
    try:
        pid, session = (int(x) for x in (out / P.PYTEST_PID).read_text().split())
    except (OSError, ValueError):
        return None
    return pid, session


def mark_stopped(out: Path, nodeid: str, bound: float, hang: str) -> None:
    """The runner's word that it stops this test at the per-test bound: the entry resumes after it.

    Written (by the runner, into the cell's events) before the hang is probed, so that whatever
    the probe makes pytest do next, the test is the runner's timeout and the cell goes on.
    """
    running = running_pytest(out)
    append_event(out, {
        "event": "killed", "nodeid": nodeid, "bound": bound, "hang": hang,
        "session": running[1] if running else -1, "t": time.time(),
    })  # fmt: skip


def stop_test(out: Path, host_pid: Callable[[int], int | None] | None = None) -> dict[str, Any]:
    """Kill the process tree of the pytest session the runner stopped a test in; the entry then
    resumes the cell. A session that ended on its own (the probe's SIGINT may end it) is left
    alone, and so is the entry's next one.

    ``host_pid``: the caller's number for the entry's pytest pid (a runner outside the cell's PID
    namespace); by default the entry's own.
    """
    killed = [e for e in events(out) if e.get("event") == "killed"]
    session = int(killed[-1].get("session", -1)) if killed else -1
    running = running_pytest(out)
    try:
        if running is None or running[1] != session:
            return {"stopped": [], "detail": f"session {session}'s pytest is not running"}
        pid = host_pid(running[0]) if host_pid is not None else running[0]
        if pid is None:
            return {"stopped": [], "detail": f"pytest {running[0]} is gone"}
        return {"stopped": kill_tree(pid)}
    finally:
        if session >= 0:
            (out / P.STOPPED.format(session=session)).touch()
