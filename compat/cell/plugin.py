"""pytest plugin streaming a cell's per-test events to ``events.jsonl``.

Loaded by the runner with ``-p compat.cell.plugin`` inside any target's
environment, so it imports nothing beyond the stdlib and pytest. It is inert
unless COMPAT_EVENTS_FILE is set. Every line is flushed when written, so a
cell killed at its time bound keeps what finished and shows what was running.

Environment:
- COMPAT_EVENTS_FILE (``protocol.ENV_EVENTS``): where to append events (see docs/DESIGN.md for the schema).
- BACKENDS_DUMP_DIR: register faulthandler on SIGUSR1 writing
  ``<dir>/pytest-<pid>.txt``, so the runner can ask for stacks before a kill.
- COMPAT_PER_TEST_TIMEOUT: seconds; a test running longer gets its stacks
  dumped to ``<dir>/overtime-<pid>.txt`` and ``"overtime": true`` on its
  result. Nothing is killed here: the cell's bound is enforced from outside.
"""

from __future__ import annotations

import faulthandler
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO

import pytest

from . import deps, leftovers, tasktree
from . import protocol as P

MESSAGE_TAIL = 4096
CRASH_LIMIT = 1000


class EventWriter:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives for the session

    def emit(self, event: P.Event) -> None:
        self._file.write(json.dumps(event, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        return str(wasxfail).removeprefix("reason: ")
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return ""


STRICT_XPASS = "[XPASS(strict)]"  # pytest fails a strict xpass with this text (after xdist's worker header)


def _strict_xpass(report: pytest.TestReport) -> bool:
    return report.failed and any(line.startswith(STRICT_XPASS) for line in report.longreprtext.splitlines())


def _phase_outcome(report: pytest.TestReport) -> str:
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if xfail:
            return "xfailed" if report.skipped else "xpassed"
        if _strict_xpass(report):
            return "xpassed"
        return report.outcome
    if report.failed:
        return "error"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "passed"


def _choose(reports: list[pytest.TestReport]) -> tuple[pytest.TestReport, str]:
    """Setup decides if it did not pass; else call; a failing teardown turns a pass into an error."""
    by_when = {r.when: r for r in reports}
    setup = by_when.get("setup")
    if (setup is not None and not setup.passed) or "call" not in by_when:
        chosen = setup or reports[0]
    else:
        chosen = by_when["call"]
    outcome = _phase_outcome(chosen)
    teardown = by_when.get("teardown")
    if teardown is not None and teardown.failed and outcome not in ("failed", "error"):
        chosen, outcome = teardown, "error"
    return chosen, outcome


def add_crash(result: P.ResultEvent, report: pytest.TestReport | pytest.CollectReport) -> None:
    """pytest's own one-line account of a failure: the exception's message and where."""
    reprcrash = getattr(report.longrepr, "reprcrash", None)
    if reprcrash is None:
        return
    result["crash"] = str(reprcrash.message)[:CRASH_LIMIT]
    result["path"] = str(reprcrash.path)
    result["lineno"] = reprcrash.lineno
    if result["crash"].startswith(PYTEST_TIMEOUT):
        result["by"] = "timeout"  # pytest-timeout's own bound, which the target installed


# The failure pytest-timeout makes of a test past its bound.
PYTEST_TIMEOUT = "Failed: Timeout"
# pytest-rerunfailures reports each failed attempt with this outcome before the last one.
RERUN = "rerun"


def summarize(nodeid: str, reports: list[pytest.TestReport], strict: bool | None) -> P.ResultEvent:
    """One result for a test from its setup/call/teardown reports."""
    chosen, outcome = _choose(reports)
    if strict is None:
        strict = next((s for r in reports if (s := getattr(r, STRICT_ATTR, None)) is not None), None)
    xpassed_strictly = outcome == "xpassed" and _strict_xpass(chosen)
    result: P.ResultEvent = {
        "event": "result",
        "nodeid": nodeid,
        "outcome": outcome,  # type: ignore[typeddict-item]  # _phase_outcome gives one of them
        "when": chosen.when,
        "reason": _strict_reason(chosen) if xpassed_strictly else _reason(chosen),
        "strict": True if xpassed_strictly else strict,
        "duration": round(sum(r.duration for r in reports), 6),
        "message": chosen.longreprtext[-MESSAGE_TAIL:] if chosen.failed and not xpassed_strictly else "",
    }
    if chosen.failed and not xpassed_strictly:
        add_crash(result, chosen)
    return result


def _strict_reason(report: pytest.TestReport) -> str:
    line = next(line for line in report.longreprtext.splitlines() if line.startswith(STRICT_XPASS))
    return line[len(STRICT_XPASS) :].strip()


STRICT_ATTR = "compat_xfail_strict"


class Strictness:
    """Puts an xfail marker's strictness on its reports, in whichever process runs the test.

    A report attribute, because pytest-xdist sends a report's attributes from
    its workers, and because another plugin (pytest-rerunfailures) may run the
    test protocol in place of pytest's.
    """

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        marker = item.get_closest_marker("xfail")
        if marker is not None:
            setattr(report, STRICT_ATTR, bool(marker.kwargs.get("strict", item.config.getini("xfail_strict"))))
        return report


class CellPlugin:
    def __init__(self, config: pytest.Config, events: EventWriter) -> None:
        self.config = config
        self.events = events
        self.reports: dict[str, list[pytest.TestReport]] = {}
        self.dump_dir = os.environ.get(P.ENV_DUMP_DIR) or None
        self.per_test = float(os.environ.get(P.ENV_PER_TEST) or 0) or None
        self._dump_files: list[IO[str]] = []
        self._overtime: IO[str] | None = None
        self._overtime_mark = 0
        self._said_collected = False
        # Attempts a re-run plugin made of a test before its last one.
        self.reruns: dict[str, int] = {}
        self.leftovers = leftovers.Tracker()

    def _open_dump(self, stem: str) -> IO[str]:
        assert self.dump_dir is not None
        Path(self.dump_dir).mkdir(parents=True, exist_ok=True)
        handle = open(Path(self.dump_dir) / f"{stem}-{os.getpid()}.txt", "a", encoding="utf-8")  # noqa: SIM115
        self._dump_files.append(handle)
        return handle

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.dump_dir and hasattr(signal, "SIGUSR1"):
            # trylast: a target plugin (backends') registering its own file wins.
            faulthandler.register(signal.SIGUSR1, file=self._open_dump("pytest"), all_threads=True)
            tasktree.install(Path(self.dump_dir) / f"pytest{P.TASKS_SUFFIX}-{os.getpid()}.txt")
        self.events.emit(
            {
                "event": "session",
                "t": time.time(),
                "python": platform.python_version(),
                "pytest": pytest.__version__,
                "argv": sys.argv,
                "per_test_timeout": self.per_test,
            }
        )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A collector that failed or was skipped (importorskip, module-level skip) is a result."""
        if not (report.failed or report.skipped):
            return
        self.events.emit({"event": "start", "nodeid": report.nodeid, "t": time.time()})
        result: P.ResultEvent = {
            "event": "result",
            "nodeid": report.nodeid,
            "outcome": "error" if report.failed else "skipped",
            "when": "collect",
            "reason": "" if report.failed else _reason(report),
            "strict": None,
            "duration": 0.0,
            "message": report.longreprtext[-MESSAGE_TAIL:] if report.failed else "",
        }
        if report.failed:
            add_crash(result, report)
        self.events.emit(result)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Exactly what this cell collected: the tests it may still owe a result."""
        if self.config.pluginmanager.hasplugin("dsession"):
            return  # pytest-xdist: the workers collect, and say so below
        self._collected([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: list[str]) -> None:
        """pytest-xdist in the cell: every worker collects the same tests; the first one's say what there is."""
        if not self._said_collected:
            self._collected(list(ids))

    def _collected(self, nodeids: list[str]) -> None:
        self._said_collected = True
        self.events.emit({"event": "collected", "nodeids": nodeids, "t": time.time()})

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.leftovers.start()
        self.reports[nodeid] = []
        self.events.emit({"event": "start", "nodeid": nodeid, "t": time.time()})
        if self.per_test and self.dump_dir:
            if self._overtime is None:
                self._overtime = self._open_dump("overtime")
            # The header is taken back at logfinish unless the dump fired.
            self._overtime_mark = self._overtime.tell()
            self._overtime.write(f"--- {nodeid} ran past its {self.per_test:g} s per-test bound\n")
            self._overtime.flush()
            try:
                faulthandler.dump_traceback_later(self.per_test, file=self._overtime)
            except RuntimeError as exc:  # no thread to be had: the pids limit is exhausted
                self._watchdog_lost(nodeid, exc)

    def _watchdog_lost(self, nodeid: str, exc: RuntimeError) -> None:
        """Degrade to the cell's outer bound, and say so once, instead of an INTERNALERROR."""
        self.per_test = None
        if self._overtime is not None:
            self._overtime.truncate(self._overtime_mark)
            self._overtime.seek(self._overtime_mark)
        self.events.emit(
            {
                "event": "note",
                "t": time.time(),
                "message": f"per-test watchdog unavailable from {nodeid} on ({exc}); only the cell's bound applies",
            }
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, []).append(report)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if self.dump_dir:
            faulthandler.cancel_dump_traceback_later()
        self.leftovers.finish(nodeid)
        reports = self.reports.pop(nodeid, [])
        if not reports:
            return
        if any(r.outcome == RERUN for r in reports):
            # An attempt a re-run plugin will make again (pytest-rerunfailures): the next one's result says it.
            self.reruns[nodeid] = self.reruns.get(nodeid, 0) + 1
            return
        result = summarize(nodeid, reports, None)
        if nodeid in self.reruns:
            result["reruns"] = self.reruns.pop(nodeid)
        if self.per_test:
            result["overtime"] = result["duration"] > self.per_test
            if self._overtime is not None and not result["overtime"]:
                self._overtime.truncate(self._overtime_mark)
                self._overtime.seek(self._overtime_mark)
        self.events.emit(result)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, exitstatus: int) -> None:
        # trylast: after the session's fixtures and the other plugins' own teardown (their pools).
        for leak in self.leftovers.leaks():
            self.events.emit(leak)
        self.events.emit({"event": "finish", "exitstatus": int(exitstatus), "t": time.time()})

    def pytest_unconfigure(self) -> None:
        if self.dump_dir and hasattr(signal, "SIGUSR1"):
            faulthandler.unregister(signal.SIGUSR1)
        self.events.close()
        for handle in self._dump_files:
            handle.close()


class Only:
    """A resumed session (``compat.cell.session``) runs only the tests the cell has not run yet."""

    def __init__(self, path: str) -> None:
        self.wanted = set(Path(path).read_text(encoding="utf-8").split("\n")) - {""}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        kept = [item for item in items if item.nodeid in self.wanted]
        dropped = [item for item in items if item.nodeid not in self.wanted]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(P.ENV_EVENTS)
    if not path:
        return
    config.pluginmanager.register(Strictness(), "compat-cell-strictness")
    if only := os.environ.get(P.ENV_ONLY):
        config.pluginmanager.register(Only(only), "compat-cell-only")
    if reuse := os.environ.get(P.ENV_REUSE):
        config.pluginmanager.register(deps.Reuse(reuse), "compat-cell-reuse")
    if deps_dir := os.environ.get(P.ENV_DEPS_DIR):
        config.pluginmanager.register(deps.Recorder(Path.cwd(), Path(deps_dir)), "compat-cell-deps")
    if hasattr(config, "workerinput"):  # xdist workers: the controller reports
        return
    config.pluginmanager.register(CellPlugin(config, EventWriter(path)), "compat-cell-events")
