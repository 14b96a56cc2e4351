"""Hangs through real cells: the per-test bound stops one test and the cell goes on; every hang is
classed, with the stacks of every thread of every interpreter read from outside its processes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from compat.matrix import AxesConfig as Axes
from compat.matrix import Cell, Matrix
from compat.matrix import CellBounds as Timeouts
from compat.matrix import TargetConfig as Target
from compat.report import build_report
from compat.results import ledger as L
from compat.results.raw import read_cell
from compat.results.schema import CellResult, Hang
from compat.runners.schedule import run_cells
from compat.runners.supervise import FORENSICS_BOUND_S
from tests.compat import cellsupport

# A per-test bound of a few seconds: the hangs start at once, and the tests around them take
# milliseconds, so a loaded machine only delays when the bound is noticed, never what it finds.
PER_TEST_S = 3.0

# -- one cell per hang class (cases_forensics.py, chosen by the backend axis) ---------------------

HANGS = ("await", "starved", "pipe", "child", "blocked")
MATRIX = Matrix(
    axes=Axes(python=("3.14",), group=("base",), backend=HANGS, capture=("fd",)),
    target=Target(
        path=str(cellsupport.FIXTURE),
        tests=("hangs/cases_forensics.py",),
        requirements=("requirements.txt",),
        reaper="backends.reap",
        backend_option="--fixture-backend",
        backend_map={h: h for h in HANGS},
    ),
    timeouts=Timeouts(per_test=PER_TEST_S, per_cell=120.0),
)

# -- one cell, six hangs, each followed by a test that must still pass (cases_bound.py) ----------

BOUND_PYTHONS = ("3.13", "3.14")
BOUND = Matrix(
    axes=Axes(python=BOUND_PYTHONS, group=("base",), backend=("trio",), capture=("fd",)),
    target=Target(
        path=str(cellsupport.FIXTURE),
        tests=("hangs/cases_bound.py",),
        requirements=("requirements.txt",),
        reaper="backends.reap",
        backend_option="--fixture-backend",
        backend_map={"trio": "ok"},
        dump_files=("/tmp/fixture-dump-{pid}.log",),
    ),
    timeouts=Timeouts(per_test=PER_TEST_S, per_cell=240.0),
)
CASES = "hangs/cases_bound.py::"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cellsupport.require_engine()
    cellsupport.image("3.14")
    out = tmp_path_factory.mktemp("forensics") / "raw"
    metas = run_cells(MATRIX, [Cell("3.14", "base", h, "fd") for h in HANGS], out_dir=out, jobs=2, progress=False)
    # Each cell's one test was stopped at the per-test bound: the cell itself completed.
    assert [m.outcome for m in metas] == ["completed"] * len(HANGS), [(m.cell, m.reason) for m in metas]
    return out


@pytest.fixture(scope="module")
def bound_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cellsupport.require_engine()
    for python in BOUND_PYTHONS:
        cellsupport.image(python)
    out = tmp_path_factory.mktemp("bound") / "raw"
    cells = [Cell(p, "base", "trio", "fd") for p in BOUND_PYTHONS]
    metas = run_cells(BOUND, cells, out_dir=out, jobs=2, progress=False)
    assert [m.outcome for m in metas] == ["completed"] * len(cells), [(m.cell, m.reason) for m in metas]
    return out


@pytest.fixture(scope="module")
def bound(bound_raw: Path) -> dict[str, CellResult]:
    return {p: read_cell(bound_raw / Cell(p, "base", "trio", "fd").id) for p in BOUND_PYTHONS}


def forensics(raw: Path, hang: str) -> dict:
    return json.loads((raw / f"py3.14-base-{hang}-capfd" / "hangs" / "01" / "forensics.json").read_text())


def hang_of(cell: CellResult, test: str) -> Hang:
    found = [h for h in cell.hangs if h.nodeid == CASES + test]
    assert len(found) == 1, [(h.nodeid, h.kind) for h in cell.hangs]
    return found[0]


def frames(hang: Hang) -> list[str]:
    return [f.frame for f in hang.frames]


# -- the per-test bound is a bound --------------------------------------------------------------


@pytest.mark.parametrize("python", BOUND_PYTHONS)
def test_after_each_hang_the_next_test_of_the_cell_runs_and_passes(bound: dict[str, CellResult], python: str) -> None:
    cell = bound[python]
    statuses = {n.removeprefix(CASES): t.status for n, t in cell.tests.items()}
    hangs = ["test_1_waits_for_a_child_without_handlers", "test_3_a_thread_holds_the_gil_while_main_waits"]
    hangs += ["test_4_a_trio_await_nobody_answers", "test_5_a_plain_sleep"]
    if python == "3.14":
        hangs.append("test_2_a_subinterpreter_never_returns")
    else:
        assert statuses["test_2_a_subinterpreter_never_returns"] == "skipped"
    for test in hangs:
        assert statuses[test] == "timeout", (test, statuses)
        assert f"ran past its {PER_TEST_S:g} s per-test bound" in cell.tests[CASES + test].reason
    assert {n: s for n, s in statuses.items() if n.endswith("_after")} == {
        f"test_{i}_after": "passed" for i in range(1, 7)
    }, statuses
    assert cell.status == "failing" and not cell.problem, (cell.status, cell.reason, cell.notes)
    # What ran after a restart says so: the test after the process that died ran in a later pytest.
    assert cell.restarts >= len(hangs) - 1
    died = cell.tests[CASES + "test_6_its_process_exits_under_it"]
    assert cell.tests[CASES + "test_6_after"].session > died.session


def test_the_local_runner_enforces_the_per_test_bound_the_same_way(tmp_path: Path) -> None:
    """Outside a container: the cell's own PID namespace, its pytest found by its NSpid from the host."""
    [meta] = run_cells(BOUND, [Cell("3.13", "base", "trio", "fd")], runner="local", out_dir=tmp_path, progress=False)
    assert meta.outcome == "completed", meta.reason
    cell = read_cell(tmp_path / meta.cell)
    statuses = {n.removeprefix(CASES): t.status for n, t in cell.tests.items()}
    assert all(s == "passed" for n, s in statuses.items() if n.endswith("_after")), statuses
    assert len([n for n in statuses if n.endswith("_after")]) == 6
    kinds = {h.nodeid.removeprefix(CASES): h.kind for h in cell.hangs}
    # On this host's 3.13.0 a SIGINT only sometimes interrupted Thread.join() (the images' 3.13 always
    # did): then the main thread is truly starved of it. The GIL holder is named either way.
    assert kinds.pop("test_3_a_thread_holds_the_gil_while_main_waits") in ("interruptible-wait", "sigint-starved")
    assert kinds == {
        "test_1_waits_for_a_child_without_handlers": "waiting-for-child",
        "test_4_a_trio_await_nobody_answers": "await-hang",
        "test_5_a_plain_sleep": "interruptible-wait",
    }, kinds
    holder = [f for f in hang_of(cell, "test_3_a_thread_holds_the_gil_while_main_waits").frames if f.gil]
    assert holder and holder[0].frame.startswith("burns_the_gil "), holder
    assert any(f.startswith("sleeps_outside_trio ") for f in frames(hang_of(cell, "test_5_a_plain_sleep")))


def test_a_fork_bomb_at_the_pids_limit_is_named_and_the_cell_goes_on(tmp_path: Path) -> None:
    cellsupport.require_engine()
    cellsupport.image("3.13")
    matrix = msgspec.structs.replace(
        BOUND,
        axes=Axes(python=("3.13",), group=("base",), backend=("trio",), capture=("fd",)),
        target=msgspec.structs.replace(BOUND.target, tests=("hangs/cases_pids.py",)),
        limits=msgspec.structs.replace(BOUND.limits, pids=64),
    )
    [meta] = run_cells(matrix, [Cell("3.13", "base", "trio", "fd")], out_dir=tmp_path, progress=False)
    assert meta.outcome == "completed", meta.reason
    cell = read_cell(tmp_path / meta.cell)
    bomb = "hangs/cases_pids.py::test_1_forks_until_the_pids_limit"
    assert cell.tests[bomb].status == "timeout"
    assert cell.tests["hangs/cases_pids.py::test_1_after"].status == "passed"
    [hang] = cell.hangs
    assert hang.kind == "pids-exhausted" and "at its pids limit (64)" in hang.detail, hang
    # Read from outside, where nothing could start inside: the fork loop's frame.
    assert any(f.frame.startswith("test_1_forks_until_the_pids_limit ") for f in hang.frames), hang.frames


def test_a_test_process_that_exits_under_a_test_names_the_targets_cause_not_ours(
    bound: dict[str, CellResult],
) -> None:
    died = bound["3.14"].tests[CASES + "test_6_its_process_exits_under_it"]
    assert died.status == "error"
    assert died.reason.startswith("pytest exited with 1 during this test (the target's doing)"), died.reason
    assert "+++ Timeout +++" in died.reason.replace("+" * 16, "")


def test_a_parent_waiting_on_a_child_without_handlers_names_the_childs_stack(bound: dict[str, CellResult]) -> None:
    hang = hang_of(bound["3.14"], "test_1_waits_for_a_child_without_handlers")
    assert hang.kind == "waiting-for-child" and hang.bound == "per-test", hang
    pids = {f.pid for f in hang.frames}
    assert len(pids) == 2, hang.frames  # the pytest process and its child
    assert any(f.startswith("child_sleeps_without_a_handler ") for f in frames(hang)), frames(hang)
    assert any(f.startswith("test_1_waits_for_a_child_without_handlers ") for f in frames(hang)), frames(hang)


def test_a_subinterpreter_that_never_returns_is_named_from_the_subinterpreter(bound: dict[str, CellResult]) -> None:
    hang = hang_of(bound["3.14"], "test_2_a_subinterpreter_never_returns")
    assert hang.kind == "sigint-starved", hang
    inside = [f for f in hang.frames if f.interpreter == 1]
    assert inside and inside[0].frame.startswith("spins_inside_the_subinterpreter (<script>:"), hang.frames
    assert inside[0].gil  # py-spy's word: it is the thread holding the GIL


@pytest.mark.parametrize("python", BOUND_PYTHONS)
def test_a_thread_holding_the_gil_while_main_waits_is_named_as_the_gil_holder(
    bound: dict[str, CellResult], python: str
) -> None:
    hang = hang_of(bound[python], "test_3_a_thread_holds_the_gil_while_main_waits")
    # The stacks name the holder whatever the machine's load (a CPU share from /proc would not).
    assert hang.kind == "interruptible-wait", hang
    holder = [f for f in hang.frames if f.gil]
    assert holder and holder[0].thread == "gil-burner" and holder[0].frame.startswith("burns_the_gil "), hang.frames
    assert any(f.thread == "MainThread" and "test_3_a_thread_holds" in f.frame for f in hang.frames)


@pytest.mark.parametrize("python", BOUND_PYTHONS)
def test_a_trio_await_nobody_answers_is_an_await_hang_naming_the_task(
    bound: dict[str, CellResult], python: str
) -> None:
    hang = hang_of(bound[python], "test_4_a_trio_await_nobody_answers")
    assert hang.kind == "await-hang", hang
    assert any("task 'lonely-receiver' awaiting " in s and "in waits_for_a_message" in s for s in hang.stuck), hang
    # The dumps are this hang's own: no task tree of another pytest process of the cell.
    assert all(f.startswith(("hangs/", "dumps/")) for f in hang.files)
    assert len({f.rsplit("-", 1)[-1] for f in hang.files if f.startswith("dumps/")}) == 1, hang.files


@pytest.mark.parametrize("python", BOUND_PYTHONS)
def test_a_sleep_outside_trio_is_an_interruptible_wait_not_an_await_hang(
    bound: dict[str, CellResult], python: str
) -> None:
    hang = hang_of(bound[python], "test_5_a_plain_sleep")
    assert hang.kind == "interruptible-wait" and "no trio loop" in hang.detail, hang
    assert any(f.startswith("sleeps_outside_trio ") for f in frames(hang)), frames(hang)


def test_the_targets_own_dump_files_are_kept_with_the_hang(bound_raw: Path) -> None:
    cell = bound_raw / "py3.14-base-trio-capfd"
    hang = hang_of(read_cell(cell), "test_5_a_plain_sleep")
    kept = [f for f in hang.files if "/target-fixture-dump-" in f]
    assert len(kept) == 1, hang.files
    assert (cell / kept[0]).read_text() == "the target's own dump: sleeps_outside_trio\n"


def test_the_report_shows_each_hang_next_to_its_test_with_its_frames(bound_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_report(bound_raw, out, baseline=Path("/dev/null"), summary=None, fail_on_regression=False, matrix=BOUND)
    md = (out / "COMPATIBILITY.md").read_text()
    for kind in ("waiting-for-child", "sigint-starved", "interruptible-wait", "await-hang"):
        assert re.search(rf"hang(?: in `[^`]+`)?: \*\*{kind}\*\*", md), kind
    assert "interpreter 1, holding the GIL: `spins_inside_the_subinterpreter (<script>:" in md
    assert re.search(r"raw/py3\.1[34]-base-trio-capfd/hangs/01/stacks\.txt`", md)
    ledger = L.decode((out / "compat.json").read_bytes())
    cell = next(c for c in ledger.cells if c.id == "py3.14-base-trio-capfd")
    assert cell.restarts >= 4 and len(cell.hangs) == 5
    after = next(t for t in ledger.tests if t.nodeid == CASES + "test_6_after")
    assert after.results[cell.id].session >= 1
    schema = json.loads((out / "compat.schema.json").read_text())
    assert "await-hang" in json.dumps(schema)  # the classes are an enum of the published schema
    html = (out / "index.html").read_text()
    assert 'data-hang="sigint-starved"' in html and '<details class="stacks">' in html


# -- one cell per class ---------------------------------------------------------------------------


def test_an_await_on_a_channel_whose_peer_is_gone_is_an_await_hang_naming_the_task(raw: Path) -> None:
    found = forensics(raw, "await")["class"]
    assert found["class"] == "await-hang", found
    assert "answered SIGINT" in found["detail"]
    cell = read_cell(raw / "py3.14-base-await-capfd")
    (hang,) = cell.hangs
    assert hang.kind == "await-hang" and hang.nodeid == "hangs/cases_forensics.py::test_hang"
    # The task tree names the stuck task and the await it is parked on (in the test's code, not trio's).
    assert any(
        "task 'orphan-waiter' awaiting " in s and "hangs/cases_forensics.py:" in s and "in orphan_waiter" in s
        for s in hang.stuck
    ), hang.stuck
    # The probe's KeyboardInterrupt does not make it "failed": the runner had stopped it.
    assert cell.tests["hangs/cases_forensics.py::test_hang"].status == "timeout"


def test_a_subinterpreter_holding_the_gil_starves_sigint_and_is_named(raw: Path) -> None:
    found = forensics(raw, "starved")["class"]
    assert found["class"] == "sigint-starved", found
    (hang,) = read_cell(raw / "py3.14-base-starved-capfd").hangs
    assert "no trio task tree came back from pid" in hang.detail  # its handler never ran
    # Read from outside, whatever the machine's load: the sub-interpreter's own stack, holding the GIL.
    inside = [f for f in hang.frames if f.interpreter]
    assert inside and inside[0].thread == "subint-spin" and inside[0].gil, hang.frames


def test_a_fork_child_writing_into_a_full_pipe_is_named_as_the_blocked_child(raw: Path) -> None:
    found = forensics(raw, "pipe")["class"]
    assert found["class"] == "waiting-for-child", found
    child = found["child"]
    assert child["class"] == "blocked-syscall" and "write() on fd" in child["detail"] and "pipe:[" in child["detail"]


def test_a_parent_waiting_on_a_child_that_ignores_signals_names_the_child(raw: Path) -> None:
    found = forensics(raw, "child")["class"]
    assert found["class"] == "waiting-for-child", found
    assert "wait4 for child" in found["detail"] and "signal.signal(s, " in found["detail"]  # the child's command line
    assert found["child"]["class"] == "blocked-syscall" and "ignores SIGINT" in found["child"]["detail"]


def test_a_write_into_a_full_pipe_is_a_blocked_syscall(raw: Path) -> None:
    found = forensics(raw, "blocked")["class"]
    assert found["class"] == "blocked-syscall" and "write() on fd" in found["detail"], found


def test_each_step_is_bounded_and_the_report_shows_each_class(raw: Path, tmp_path: Path) -> None:
    for hang in HANGS:
        seconds = forensics(raw, hang)["seconds"]
        assert seconds is not None and seconds < FORENSICS_BOUND_S, (hang, seconds)
        stacks = json.loads((raw / f"py3.14-base-{hang}-capfd" / "hangs" / "01" / "stacks.json").read_text())
        assert stacks["processes"] and stacks["seconds"] < FORENSICS_BOUND_S, stacks
    build_report(
        raw, tmp_path / "out", baseline=Path("/dev/null"), summary=None, fail_on_regression=False, matrix=MATRIX
    )
    md = (tmp_path / "out" / "COMPATIBILITY.md").read_text()
    for kind in ("await-hang", "sigint-starved", "waiting-for-child", "blocked-syscall"):
        assert re.search(rf"hang in `py3\.14-base-\w+-capfd`: \*\*{kind}\*\*", md), kind
    ledger = L.decode((tmp_path / "out" / "compat.json").read_bytes())
    assert {h.kind for c in ledger.cells for h in c.hangs} == {
        "await-hang",
        "sigint-starved",
        "waiting-for-child",
        "blocked-syscall",
    }
