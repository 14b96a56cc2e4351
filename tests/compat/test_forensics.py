"""Hang forensics through real cells: one constructed hang per class, each named with its evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compat.matrix import AxesConfig as Axes
from compat.matrix import Cell, Matrix
from compat.matrix import CellBounds as Timeouts
from compat.matrix import TargetConfig as Target
from compat.report import build_report
from compat.results import ledger as L
from compat.results.raw import read_cell
from compat.runners.base import FORENSICS_BOUND_S
from compat.runners.schedule import run_cells
from tests.compat import cellsupport

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
    # The hangs start at once; the margin is for a loaded machine's container start.
    timeouts=Timeouts(per_test=20.0, per_cell=25.0),
)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cellsupport.require_engine()
    cellsupport.image("3.14")
    out = tmp_path_factory.mktemp("forensics") / "raw"
    metas = run_cells(MATRIX, [Cell("3.14", "base", h, "fd") for h in HANGS], out_dir=out, jobs=2, progress=False)
    assert [m.outcome for m in metas] == ["timeout"] * len(HANGS), [(m.cell, m.reason) for m in metas]
    return out


def forensics(raw: Path, hang: str) -> dict:
    return json.loads((raw / f"py3.14-base-{hang}-capfd" / "forensics.json").read_text())


def test_an_await_on_a_channel_whose_peer_is_gone_is_an_await_hang_naming_the_task(raw: Path) -> None:
    found = forensics(raw, "await")["class"]
    assert found["class"] == "await-hang", found
    assert "answered SIGINT" in found["detail"]
    hang = read_cell(raw / "py3.14-base-await-capfd").hang
    assert hang is not None and hang.kind == "await-hang"
    # The task tree names the stuck task and the await it is parked on (in the test's code, not trio's).
    assert any(
        "task 'orphan-waiter' awaiting " in s and "hangs/cases_forensics.py:" in s and "in orphan_waiter" in s
        for s in hang.stuck
    ), hang.stuck
    # The test was running when the bound expired: the probe's KeyboardInterrupt does not make it "failed".
    test = read_cell(raw / "py3.14-base-await-capfd").tests["hangs/cases_forensics.py::test_hang"]
    assert test.status == "timeout"


def test_a_subinterpreter_holding_the_gil_starves_sigint_and_is_named(raw: Path) -> None:
    found = forensics(raw, "starved")["class"]
    assert found["class"] == "sigint-starved", found
    assert "holding the GIL: thread" in found["detail"] and "'subint-spin'" in found["detail"]
    hang = read_cell(raw / "py3.14-base-starved-capfd").hang
    assert hang is not None and "no trio task tree came back from pid" in hang.detail  # its handler never ran


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


def test_the_step_is_bounded_and_the_report_shows_each_class(raw: Path, tmp_path: Path) -> None:
    for hang in HANGS:
        seconds = forensics(raw, hang)["seconds"]
        assert seconds < FORENSICS_BOUND_S, (hang, seconds)
    build_report(
        raw, tmp_path / "out", baseline=Path("/dev/null"), summary=None, fail_on_regression=False, matrix=MATRIX
    )
    md = (tmp_path / "out" / "COMPATIBILITY.md").read_text()
    for kind in ("await-hang", "sigint-starved", "waiting-for-child", "blocked-syscall"):
        assert f"hang: **{kind}**" in md
    assert "dumps: `raw/py3.14-base-await-capfd/dumps/`" in md
    ledger = L.decode((tmp_path / "out" / "compat.json").read_bytes())
    assert {c.hang.kind for c in ledger.cells if c.hang} == {
        "await-hang",
        "sigint-starved",
        "waiting-for-child",
        "blocked-syscall",
    }
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'data-hang="sigint-starved"' in html
