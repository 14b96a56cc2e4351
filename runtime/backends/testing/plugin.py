"""pytest plugin for suites of the ``backends`` runtime.

- ``--spawn-backend NAME|a,b|all``: the backend(s) tests run on. With several,
  tests that request the ``spawn_backend`` fixture are parametrised over them.
  Every test runs with $BACKENDS_SPAWN_BACKEND set to its backend.
- markers ``skipon_spawn_backend(*names, reason=)`` and
  ``xfailon_spawn_backend(*names, reason=, strict=True)`` at any level.
- a per-test leak check for tests that use ``spawn_backend``
  (``--no-backends-leak-check`` turns it off): new processes of ours below
  this pytest process, new /dev/shm segments and socket files fail the test.
- session-end reaping, printed in the summary and written with
  ``--backends-leak-report PATH`` in the ``backends-reap --json`` shape.
- ``--backends-dump-dir DIR``: faulthandler dumps on SIGUSR1 into files, here
  and (through $BACKENDS_DUMP_DIR) in every actor.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

import backends
from backends import _dumps, reap
from backends._paths import (
    SHM_PREFIX,
    parse_run_dir_name,
    parse_shm_name,
    parse_socket_name,
    runtime_base,
)
from backends.spawn import ENV_VAR

LEAK_WAIT = 2.0
SESSION_GRACE = 3.0
SKIP_MARK = "skipon_spawn_backend"
XFAIL_MARK = "xfailon_spawn_backend"
WORKER_KEY = "backends_reap"


@dataclass
class _State:
    backends: list[str]
    unavailable: dict[str, str]
    leak_check: bool
    leak_wait: float
    report_path: Path | None
    xdist_controller: bool
    xdist_worker: bool
    reaped: reap.ReapReport = field(default_factory=reap.ReapReport)
    # Every pid seen below this process: what names one of these is ours to sweep.
    seen: set[int] = field(default_factory=set)


STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("backends", "backends actor runtime")
    group.addoption(
        "--spawn-backend",
        dest="spawn_backend",
        default="trio",
        metavar="NAME",
        help=f"spawn backend: one of {', '.join(backends.BACKEND_NAMES)}, "
        "a comma list, or 'all' (every backend available here); default trio",
    )
    group.addoption(
        "--no-backends-leak-check",
        dest="backends_leak_check",
        action="store_false",
        help="do not fail tests that leak actor processes, shm segments or socket files",
    )
    group.addoption(
        "--backends-leak-wait",
        dest="backends_leak_wait",
        type=float,
        default=LEAK_WAIT,
        metavar="S",
        help=f"seconds a leak may take to go away by itself (default {LEAK_WAIT})",
    )
    group.addoption(
        "--backends-leak-report",
        dest="backends_leak_report",
        default=None,
        metavar="PATH",
        help="write what the session-end reaper removed as JSON to PATH",
    )
    group.addoption(
        "--backends-dump-dir",
        dest="backends_dump_dir",
        default=None,
        metavar="DIR",
        help="faulthandler stack dumps on SIGUSR1 go to files in DIR (pytest and actors)",
    )


def _select_backends(spec: str) -> tuple[list[str], dict[str, str]]:
    """The backends to run, and the unavailable ones ``all`` left out."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    valid = backends.BACKEND_NAMES
    if not names:
        raise pytest.UsageError(f"--spawn-backend is empty; valid: {', '.join(valid)}, all")
    if unknown := [n for n in names if n != "all" and n not in valid]:
        raise pytest.UsageError(
            f"--spawn-backend: unknown spawn backend {unknown[0]!r}; "
            f"valid: {', '.join(valid)} (or a comma list, or 'all')"
        )
    reasons = backends.available_backends()
    if "all" in names:
        # Explicit names after 'all' are still checked below.
        names = [n for n in valid if reasons[n] is None] + [n for n in names if n != "all"]
    for name in names:
        if (reason := reasons[name]) is not None:
            raise pytest.UsageError(str(backends.BackendUnavailable(name, reason)))
    chosen = list(dict.fromkeys(names))
    left_out = {n: r for n, r in reasons.items() if r is not None and n not in chosen}
    if not chosen:
        raise pytest.UsageError(
            "--spawn-backend=all: no spawn backend is available here: "
            + "; ".join(f"{n}: {r}" for n, r in left_out.items())
        )
    return chosen, left_out


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SKIP_MARK}(*backends, reason=None): skip the test on these spawn backends",
    )
    config.addinivalue_line(
        "markers",
        f"{XFAIL_MARK}(*backends, reason=None, strict=True): expect failure on these backends",
    )
    chosen, left_out = _select_backends(config.getoption("spawn_backend"))
    report = config.getoption("backends_leak_report")
    config.stash[STATE] = _State(
        backends=chosen,
        unavailable=left_out,
        leak_check=config.getoption("backends_leak_check"),
        leak_wait=config.getoption("backends_leak_wait"),
        report_path=Path(report) if report else None,
        xdist_controller=config.pluginmanager.hasplugin("dsession"),
        xdist_worker=hasattr(config, "workerinput"),
    )
    if dump_dir := config.getoption("backends_dump_dir"):
        Path(dump_dir).mkdir(parents=True, exist_ok=True)
        os.environ[_dumps.ENV_VAR] = str(Path(dump_dir).resolve())
        _dumps.install("pytest")


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash[STATE]
    lines = [f"spawn backends: {', '.join(state.backends)}"]
    lines += [f"spawn backend {n} is unavailable here: {r}" for n, r in state.unavailable.items()]
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One backend adds no parameter, so node ids stay the same in every matrix cell.
    chosen = metafunc.config.stash[STATE].backends
    if "spawn_backend" in metafunc.fixturenames and len(chosen) > 1:
        metafunc.parametrize("spawn_backend", chosen, ids=chosen)


def item_backend(item: pytest.Item) -> str:
    """The backend an item runs on: its parameter, else the first one selected."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "spawn_backend" in callspec.params:
        return str(callspec.params["spawn_backend"])
    return item.config.stash[STATE].backends[0]


# --- markers -----------------------------------------------------------------


def _marker_problem(mark: pytest.Mark) -> str | None:
    allowed = {"reason"} | ({"strict"} if mark.name == XFAIL_MARK else set())
    if extra := set(mark.kwargs) - allowed:
        return f"unexpected keyword {min(extra)!r}"
    if not mark.args:
        return "names no spawn backend"
    for name in mark.args:
        if name not in backends.BACKEND_NAMES:
            return f"unknown spawn backend {name!r}; valid: {', '.join(backends.BACKEND_NAMES)}"
    return None


def _invalid_markers(item: pytest.Item) -> list[str]:
    return [
        f"{item.nodeid}: @{name}{mark.args!r}: {problem}"
        for name in (SKIP_MARK, XFAIL_MARK)
        for mark in item.iter_markers(name)
        if (problem := _marker_problem(mark))
    ]


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # Checked here, not at run time, so a typo is a collection error for the module.
    report: pytest.CollectReport = yield
    if report.passed and report.result:
        problems = [p for node in report.result if isinstance(node, pytest.Item) for p in _invalid_markers(node)]
        if problems:
            report.outcome = "failed"
            report.longrepr = "\n".join(dict.fromkeys(problems))
            report.result = []
    return report


def _first_match(item: pytest.Item, name: str, backend: str) -> pytest.Mark | None:
    # iter_markers yields the closest level first: function, class, module.
    return next((m for m in item.iter_markers(name) if backend in m.args), None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        backend = item_backend(item)
        if mark := _first_match(item, SKIP_MARK, backend):
            reason = mark.kwargs.get("reason") or f"skipped on --spawn-backend={backend}"
            item.add_marker(pytest.mark.skip(reason=reason))
        elif mark := _first_match(item, XFAIL_MARK, backend):
            reason = mark.kwargs.get("reason") or f"expected to fail on --spawn-backend={backend}"
            item.add_marker(pytest.mark.xfail(reason=reason, strict=mark.kwargs.get("strict", True)))


# --- fixtures and the leak check ----------------------------------------------


@pytest.fixture
def spawn_backend(request: pytest.FixtureRequest) -> str:
    """The spawn backend this test runs on."""
    return item_backend(request.node)


@dataclass(frozen=True)
class _Snapshot:
    processes: frozenset[int]
    shm: frozenset[str]
    uds: frozenset[str]


def _uds_paths(base: Path) -> set[str]:
    """Socket files and run directories under the runtime base."""
    found: set[str] = set()
    try:
        entries = list(base.iterdir())
    except OSError:
        return found
    for path in entries:
        if parse_run_dir_name(path.name) is not None:
            found.add(str(path))
            with contextlib.suppress(OSError):
                found.update(str(p) for p in path.iterdir() if parse_socket_name(p.name))
        elif parse_socket_name(path.name):
            found.add(str(path))
    return found


def _shm_names() -> set[str]:
    try:
        return {str(reap.SHM_DIR / n) for n in os.listdir(reap.SHM_DIR) if n.startswith(SHM_PREFIX)}
    except FileNotFoundError:
        return set()


def _snapshot(seen: set[int]) -> _Snapshot:
    table = reap.process_table()
    seen.update(reap.subtree(table, os.getpid()))
    return _Snapshot(
        processes=frozenset(reap.find_descendants(os.getpid(), table)),
        shm=frozenset(_shm_names()),
        uds=frozenset(_uds_paths(runtime_base())),
    )


def _owner_pid(path: str) -> int | None:
    """The pid a leaked path names: a socket's actor, a run directory's root, a segment's creator."""
    name = os.path.basename(path)
    if (parsed := parse_socket_name(name)) is not None:
        return parsed[1]
    if (root := parse_run_dir_name(name)) is not None:
        return root
    return parsed[1] if (parsed := parse_shm_name(name)) is not None else None


@dataclass
class _Leaks:
    processes: list[reap.ProcInfo]
    shm: list[str]
    uds: list[str]

    def __bool__(self) -> bool:
        return bool(self.processes or self.shm or self.uds)

    def describe(self) -> str:
        lines = [f"process {p.pid} {p.title!r} ({'zombie' if p.zombie else 'running'})" for p in self.processes]
        lines += [f"shm segment {s}" for s in self.shm]
        lines += [f"socket path {u}" for u in self.uds]
        return "\n  ".join(lines)


def _new_leaks(before: _Snapshot, seen: set[int]) -> _Leaks:
    """What appeared since ``before`` and is this process's doing.

    Other pytest processes (xdist workers, other sessions) share /dev/shm and
    the runtime base: a path counts only when the pid it names is this process,
    one of its descendants seen during the test, or dead.
    """
    me = os.getpid()
    table = reap.process_table()
    procs = [table[p] for p in reap.find_descendants(me, table) if p not in before.processes]
    seen.update(reap.subtree(table, me))

    def mine(path: str) -> bool:
        owner = _owner_pid(path)
        if owner is None:
            return False
        return owner == me or owner in seen or not reap.pid_alive(owner)

    shm = sorted(p for p in _shm_names() - before.shm if mine(p))
    uds = sorted(p for p in _uds_paths(runtime_base()) - before.uds if mine(p))
    return _Leaks(procs, shm, uds)


def _wait_for_leaks(before: _Snapshot, wait: float, seen: set[int]) -> _Leaks:
    """Poll until nothing leaks or ``wait`` passes: teardown may still be finishing."""
    deadline = time.monotonic() + wait
    while (leaks := _new_leaks(before, seen)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return leaks


def _clean_up(leaks: _Leaks) -> reap.ReapReport:
    """Remove what a failed leak check found so the next test starts clean."""
    report = reap.reap([p.pid for p in leaks.processes], grace=1.0)
    for path in leaks.shm:
        Path(path).unlink(missing_ok=True)
        report.shm.append(path)
    # Sockets before their directories; a directory with something else in it stays.
    for path in sorted(leaks.uds, key=len, reverse=True):
        p = Path(path)
        try:
            if stat.S_ISDIR(p.lstat().st_mode):
                p.rmdir()
            else:
                p.unlink()
            report.uds.append(path)
        except OSError:
            pass
    return report


@pytest.fixture(autouse=True)
def _backends_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Sets $BACKENDS_SPAWN_BACKEND; checks for leaks after tests that spawn."""
    state = request.config.stash[STATE]
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = item_backend(request.node)
    check = state.leak_check and "spawn_backend" in request.fixturenames
    before = _snapshot(state.seen) if check else None
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous
    if before is None:
        return
    leaks = _wait_for_leaks(before, state.leak_wait, state.seen)
    if leaks:
        state.reaped.merge(_clean_up(leaks))
        pytest.fail(f"test leaked (now reaped):\n  {leaks.describe()}", pytrace=False)


# --- session end ---------------------------------------------------------------


def _session_sweep(state: _State) -> reap.ReapReport:
    """Orphaned segments and socket files this session's processes made.

    Scoped by the pid a path names, because /dev/shm and the runtime base are
    shared with whatever else runs on the host; ``backends-reap --shm --uds``
    after pytest is the machine-wide sweep.
    """
    me = os.getpid()
    state.seen.update(reap.subtree(reap.process_table(), me))
    mine = state.seen | {me}
    report = reap.ReapReport()
    for path in reap.find_orphan_shm():
        if _owner_pid(str(path)) in mine:
            path.unlink(missing_ok=True)
            report.shm.append(str(path))
    for path in reap.find_orphan_uds():
        owner = _owner_pid(str(path))
        if owner in mine:
            try:
                path.rmdir() if path.is_dir() else path.unlink()
                report.uds.append(str(path))
            except OSError:
                pass
    return report


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # trylast: an xdist controller has torn its workers down by now.
    from backends.spawn import subint

    # If a sub-interpreter lingers, the process leaves without finalizing
    # (which would hang); it must still leave with pytest's status.
    subint.set_exit_status(exitstatus)
    # The warm interpreter and the forker thread serve the session, not a test: they go with the
    # session (before a leak check of what tests left alive looks).
    subint.POOL.drain()
    if (forkserver := sys.modules.get("backends.spawn.forkserver")) is not None:
        forkserver.shutdown()
    config = session.config
    state = config.stash.get(STATE, None)
    if state is None:
        return
    table = reap.process_table()
    # What a leak check killed may linger as our zombie: it was reported already.
    done = {p.pid for p in state.reaped.processes}
    roots = reap.find_descendants(os.getpid(), table, through_foreign=not state.xdist_controller)
    state.reaped.merge(reap.reap([p for p in roots if p not in done], grace=SESSION_GRACE, table=table))
    state.reaped.merge(_session_sweep(state))
    if state.xdist_worker:
        config.workeroutput[WORKER_KEY] = state.reaped.to_json().decode()  # type: ignore[attr-defined]
    elif state.report_path is not None:
        state.report_path.parent.mkdir(parents=True, exist_ok=True)
        state.report_path.write_bytes(state.reaped.to_json() + b"\n")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist controller: fold in what a worker reaped."""
    raw = getattr(node, "workeroutput", {}).get(WORKER_KEY)
    if raw:
        state = node.config.stash[STATE]
        state.reaped.merge(msgspec.json.decode(raw, type=reap.ReapReport))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or state.reaped.empty:
        return
    terminalreporter.section("backends reaper")
    r = state.reaped
    terminalreporter.line(
        f"reaped {len(r.processes)} process(es) (SIGINT {r.signalled}, SIGKILL {r.escalated}), "
        f"{len(r.shm)} shm segment(s), {len(r.uds)} socket path(s)"
    )
    for line in reap.format_report(r):
        terminalreporter.line(line)
