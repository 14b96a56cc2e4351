"""The live board and the plain log, on raw cell directories written as the runner writes them."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from compat.matrix import parse_cell_id
from compat.matrix.cells import Cell
from compat.report.bench import event_lines, write_cell
from compat.results.raw import read_meta
from compat.runners.progress import PlainLog, ProgressBoard, print_summary

IDS = ["py3.14-base-trio-capfd", "py3.14-base-trio-capsys", "py3.14-base-subint-capfd"]


def cell_of(cell_id: str) -> Cell:
    p = parse_cell_id(cell_id)
    assert p is not None
    return Cell(p.python, p.group, p.backend, p.capture)


def render(board: ProgressBoard) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(board)
    return console.export_text()


def test_the_board_shows_progress_an_eta_and_what_each_running_cell_is_doing(tmp_path: Path) -> None:
    # The previous run's cells took 10 s each (write_cell's meta says so).
    for cid in IDS:
        write_cell(tmp_path, cid, results=[{"nodeid": "t.py::test_a", "outcome": "passed"}])
    cells = [cell_of(c) for c in IDS]
    board = ProgressBoard(cells, tmp_path, run_id="r1", runner="docker", jobs=1)
    assert set(board.expected.values()) == {10.0}
    board("start", cells[0], None)
    # The running cell has streamed one failure and is inside its second test.
    events = event_lines([{"nodeid": "t.py::test_a", "outcome": "failed"}], running="t.py::test_b", finished=False)
    (tmp_path / IDS[0] / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    text = render(board)
    assert "0/3 done" in text and "running 1" in text
    assert "s left" in text
    assert "1 done, 1 failing · t.py::test_b" in text
    # Two cells not started (10 s each) and one just started: at most 30 s left, at least 20.
    start = board.running[cells[0]]
    assert board.eta(start) == 30.0
    assert board.eta(start + 4) == 26.0


def test_a_cell_with_failing_tests_is_never_reported_as_fine(tmp_path: Path) -> None:
    write_cell(tmp_path, IDS[0], results=[{"nodeid": "t.py::test_a", "outcome": "failed", "crash": "ValueError: x"}])
    cell = cell_of(IDS[0])
    meta, _ = read_meta(tmp_path / IDS[0])
    assert meta is not None and meta.outcome == "completed"  # the runner's word: pytest completed
    out = io.StringIO()
    log = PlainLog([cell], tmp_path, stream=out)
    log("start", cell, None)
    log("done", cell, meta)
    board = ProgressBoard([cell], tmp_path, run_id="r1", runner="docker")
    board("done", cell, meta)
    assert "failing" in render(board)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("[1/1] failing     py3.14-base-trio-capfd  1 failed")
    assert lines[2] == "    FAILED t.py::test_a - ValueError: x"
    summary = io.StringIO()
    print_summary(log.finished, tmp_path, "other.toml", stream=summary)
    assert "uv run compat --matrix other.toml run py3.14-base-trio-capfd" in summary.getvalue()
    assert "uv run compat --matrix other.toml repro py3.14-base-trio-capfd t.py::test_a -- --pdb" in summary.getvalue()


def test_q_shows_only_what_is_not_ok_and_v_every_failure_with_the_output(tmp_path: Path) -> None:
    failing = [{"nodeid": f"t.py::test_{i:02}", "outcome": "failed", "crash": f"E{i}"} for i in range(12)]
    write_cell(tmp_path, IDS[0], results=failing)
    write_cell(tmp_path, IDS[1], results=[{"nodeid": "t.py::test_a", "outcome": "passed"}])
    (tmp_path / IDS[0] / "output.log").write_text("collected 12 items\nE   AssertionError: the real one\n")
    cells = [cell_of(c) for c in IDS[:2]]

    def log_at(verbosity: int) -> tuple[list[str], list[str]]:
        out, summary = io.StringIO(), io.StringIO()
        log = PlainLog(cells, tmp_path, stream=out, verbosity=verbosity)
        for cell in cells:
            log("start", cell, None)
            meta, _ = read_meta(tmp_path / cell.id)
            log("done", cell, meta)
        print_summary(log.finished, tmp_path, stream=summary, verbosity=verbosity)
        return out.getvalue().splitlines(), summary.getvalue().splitlines()

    quiet, quiet_summary = log_at(-1)
    assert not any("start" in line or IDS[1] in line for line in quiet)
    assert quiet[0].startswith(f"[1/2] failing     {IDS[0]}")
    assert sum(line.startswith("    FAILED") for line in quiet) == 10
    assert "... and 2 more (-v lists them" in quiet[-1]
    assert not any(IDS[1] in line for line in quiet_summary)

    normal, _ = log_at(0)
    assert any(line.startswith(f"[2/2] ok          {IDS[1]}") for line in normal)
    assert not any("AssertionError: the real one" in line for line in normal)

    verbose, verbose_summary = log_at(1)
    assert sum(line.startswith("    FAILED") for line in verbose) == 12
    assert "    E   AssertionError: the real one" in verbose
    assert any(line.startswith(f"  ok          {IDS[1]}") for line in verbose_summary)


def test_cells_that_will_be_reused_take_no_time_in_the_estimate(tmp_path: Path) -> None:
    from compat.runners.progress import live_progress

    for cid in IDS:
        write_cell(tmp_path, cid, results=[{"nodeid": "t.py::test_a", "outcome": "passed"}])
    cells = [cell_of(c) for c in IDS]
    with live_progress(cells, tmp_path, run_id="r", runner="docker", jobs=1, cached=cells[:2]) as board:
        assert board.eta(board.started) == 10.0  # only the third cell will run, 10 s last time


def on_a_terminal(*argv: str, cwd: Path) -> str:
    """``python -m compat ARGV`` with a real pseudo-terminal for stdout and stderr: what a person sees."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "compat", *argv], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
        cwd=cwd, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=600)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_the_live_board_names_each_finished_cells_failures_and_honours_q_and_v(tmp_path: Path) -> None:
    import shutil

    from tests.compat import cellsupport
    from tests.compat.places import ROOT, fixture

    cellsupport.require_engine()
    project = tmp_path / "wirekit"
    shutil.copytree(fixture("project"), project, ignore=shutil.ignore_patterns("__pycache__", "reports"))
    cells = ["py3.13-base-fork-capsys-tcp", "py3.13-base-plain-capsys-tcp"]  # one failing, one ok
    config = str(project / "compat.toml")
    seen = on_a_terminal("--matrix", config, "run", *cells, "--no-cache", cwd=ROOT)
    assert "\x1b[" in seen  # the live board drew: this was a terminal
    assert "failing     py3.13-base-fork-capsys-tcp" in seen and "ok          py3.13-base-plain-capsys-tcp" in seen
    assert "FAILED tests/check_basic.py::test_wire - ConnectionError: the fork backend cannot share a tcp" in seen
    quiet = on_a_terminal("--matrix", config, "run", *cells, "--no-cache", "-q", cwd=ROOT)
    assert "FAILED tests/check_basic.py::test_wire" in quiet
    assert "] ok          py3.13-base-plain-capsys-tcp" not in quiet  # -q: only what is not ok
    verbose = on_a_terminal("--matrix", config, "run", *cells, "--no-cache", "-v", cwd=ROOT)
    assert "--- py3.13-base-fork-capsys-tcp: pytest output" in verbose  # -v: the output of what is not ok
