"""compat.results: a raw cell directory -> per-test and per-cell statuses."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import msgspec

from compat.report.bench import event_lines, write_cell
from compat.results.junit import junit_nodeid
from compat.results.raw import read_cell
from compat.results.schema import CellMeta

CELL = "py3.14-base-trio-capfd"

ALL_OUTCOMES = [
    {"nodeid": "t.py::test_pass", "outcome": "passed"},
    {
        "nodeid": "t.py::test_fail",
        "outcome": "failed",
        "message": "def test_fail():\n>       assert 1 == 2\nE       assert 1 == 2\n\nt.py:3: AssertionError",
    },
    {"nodeid": "t.py::test_setup", "outcome": "error", "when": "setup", "message": "E   RuntimeError: fixture broke"},
    {"nodeid": "t.py::test_xfail", "outcome": "xfailed", "reason": "known bug #12", "strict": False},
    {"nodeid": "t.py::test_xpass", "outcome": "xpassed", "reason": "fixed?", "strict": False},
    {
        "nodeid": "t.py::test_strict",
        "outcome": "failed",
        "strict": True,
        "message": "[XPASS(strict)] should still fail",
    },
    {"nodeid": "t.py::test_skip", "outcome": "skipped", "reason": "needs 3.14"},
]


def statuses(cell):
    return {n: (t.status, t.reason) for n, t in cell.tests.items()}


def test_every_outcome_is_kept_apart(tmp_path: Path) -> None:
    cell = read_cell(write_cell(tmp_path, CELL, results=ALL_OUTCOMES))
    assert statuses(cell) == {
        "t.py::test_pass": ("passed", ""),
        "t.py::test_fail": ("failed", "assert 1 == 2"),
        "t.py::test_setup": ("error", "RuntimeError: fixture broke"),
        "t.py::test_xfail": ("xfailed", "known bug #12"),
        "t.py::test_xpass": ("xpassed", "fixed?"),
        "t.py::test_strict": ("xpassed", "should still fail"),
        "t.py::test_skip": ("skipped", "needs 3.14"),
    }
    assert cell.tests["t.py::test_strict"].strict is True
    assert cell.tests["t.py::test_xpass"].strict is False
    assert cell.tests["t.py::test_setup"].when == "setup"
    assert cell.status == "failing"
    assert cell.source == "events"
    assert (cell.python, cell.group, cell.backend, cell.capture) == ("3.14", "base", "trio", "fd")


def test_declared_outcomes_alone_make_an_ok_cell(tmp_path: Path) -> None:
    ok = [
        r
        for r in ALL_OUTCOMES
        if r["nodeid"] in ("t.py::test_pass", "t.py::test_xfail", "t.py::test_skip", "t.py::test_xpass")
    ]
    cell = read_cell(write_cell(tmp_path, CELL, results=ok))
    assert (cell.status, cell.reason) == ("ok", "")


def test_a_strict_xpass_alone_fails_the_cell(tmp_path: Path) -> None:
    strict = [r for r in ALL_OUTCOMES if r["nodeid"] == "t.py::test_strict"]
    assert read_cell(write_cell(tmp_path, CELL, results=strict)).status == "failing"


def test_failed_then_passed_in_the_same_cell_is_flaky(tmp_path: Path) -> None:
    results = [
        {"nodeid": "t.py::test_f", "outcome": "failed", "message": "E   boom"},
        {"nodeid": "t.py::test_f", "outcome": "passed"},
    ]
    cell = read_cell(write_cell(tmp_path, CELL, results=results))
    assert cell.tests["t.py::test_f"].status == "flaky"
    assert "boom" in cell.tests["t.py::test_f"].message
    assert cell.status == "ok"


def test_the_running_test_of_a_timed_out_cell_gets_the_dump(tmp_path: Path) -> None:
    d = write_cell(
        tmp_path,
        CELL,
        outcome="timeout",
        results=ALL_OUTCOMES[:1],
        running="t.py::test_hang",
        reason="cell exceeded its 30 s bound while t.py::test_hang was running",
        dumps={"pytest-12.txt": 'Thread 0x1 (most recent call first):\n  File "t.py", line 9 in test_hang\n'},
        timeout_s=30,
    )
    cell = read_cell(d)
    hang = cell.tests["t.py::test_hang"]
    assert hang.status == "timeout"
    assert "30 s bound" in hang.reason
    assert "line 9 in test_hang" in hang.message and "pytest-12.txt" in hang.message
    assert cell.status == "timeout" and "t.py::test_hang" in cell.reason


def test_junit_is_the_fallback_and_keeps_xfail(tmp_path: Path) -> None:
    junit = """<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.test_a.TestK" name="test_x[p]"><skipped type="pytest.xfail" message="known"/></testcase>
<testcase classname="tests.test_a" name="test_s"><skipped type="pytest.skip" message="Skipped: nope"/></testcase>
<testcase classname="tests.test_a" name="test_f"><failure message="assert 0">trace</failure></testcase>
<testcase classname="tests.test_a" name="test_e"><error message="failed on setup">trace</error></testcase>
</testsuite></testsuites>"""
    cell = read_cell(write_cell(tmp_path, CELL, events=False, junit=junit))
    assert cell.source == "junit"
    assert statuses(cell) == {
        "tests/test_a.py::test_ok": ("passed", ""),
        "tests/test_a.py::TestK::test_x[p]": ("xfailed", "known"),
        "tests/test_a.py::test_s": ("skipped", "nope"),
        "tests/test_a.py::test_f": ("failed", "assert 0"),
        "tests/test_a.py::test_e": ("error", "failed on setup"),
    }
    (tmp_path / CELL / "events.jsonl").unlink(missing_ok=True)
    assert junit_nodeid("a.b.C", "t") == "a/b.py::C::t"


def test_damaged_events_make_an_error_cell_that_keeps_its_tests(tmp_path: Path) -> None:
    events = event_lines(ALL_OUTCOMES[:2])
    d = write_cell(tmp_path, CELL, events=events)
    lines = (d / "events.jsonl").read_text().splitlines()
    lines.insert(2, "{not json")
    (d / "events.jsonl").write_text("\n".join(lines) + "\n")
    cell = read_cell(d)
    assert cell.status == "error"
    assert "events.jsonl line 3" in cell.reason
    assert set(cell.tests) == {"t.py::test_pass", "t.py::test_fail"}


def test_a_line_cut_short_by_the_kill_is_not_damage(tmp_path: Path) -> None:
    d = write_cell(tmp_path, CELL, results=ALL_OUTCOMES[:1])
    with open(d / "events.jsonl", "a") as f:
        f.write('{"event": "start", "nodeid": "t.py::te')
    cell = read_cell(d)
    assert cell.status == "ok"


def test_missing_or_damaged_meta_is_an_error_cell_with_axes_from_its_id(tmp_path: Path) -> None:
    missing = read_cell(write_cell(tmp_path, "py3.13-greenback-subint-capno", results=ALL_OUTCOMES[:1], meta=False))
    assert missing.status == "error" and "meta.json is missing" in missing.reason
    assert (missing.python, missing.group, missing.backend, missing.capture) == ("3.13", "greenback", "subint", "no")
    assert missing.tests["t.py::test_pass"].status == "passed"

    d = write_cell(tmp_path, CELL, results=ALL_OUTCOMES[:1])
    (d / "meta.json").write_text('{"cell": 3')
    damaged = read_cell(d)
    assert damaged.status == "error" and "meta.json is damaged" in damaged.reason


def test_unreadable_junit_and_nothing_at_all(tmp_path: Path) -> None:
    bad = read_cell(write_cell(tmp_path, CELL, events=False, junit="<testsuites><testcase"))
    assert bad.status == "error" and "junit.xml is damaged" in bad.reason
    nothing = read_cell(write_cell(tmp_path, "py3.13-base-trio-capfd", events=False))
    assert nothing.status == "error" and "neither events.jsonl nor junit.xml" in nothing.reason


def test_runner_outcomes_become_cell_statuses(tmp_path: Path) -> None:
    for outcome, reason in [
        ("unsupported", "subint needs 3.14"),
        ("unavailable", "no python3.14"),
        ("error", "image build failed"),
    ]:
        cell = read_cell(write_cell(tmp_path / outcome, CELL, outcome=outcome, reason=reason))
        assert (cell.status, cell.reason) == (outcome, reason)


def test_leaks_from_the_census_and_the_reaper(tmp_path: Path) -> None:
    census = {
        "processes": [
            {"pid": 7, "ppid": 1, "state": "S", "cmdline": "python -m backends._child"},
            {"pid": 8, "ppid": 1, "state": "Z", "cmdline": ""},
        ],
        "zombies": 1,
    }
    cell = read_cell(
        write_cell(
            tmp_path,
            CELL,
            results=ALL_OUTCOMES[:1],
            census=census,
            reap={"processes": [], "signalled": 0, "escalated": 0, "shm": ["/dev/shm/backends-x"], "uds": []},
        )
    )
    assert cell.status == "leaked"
    assert (cell.leaks.processes, cell.leaks.zombies, cell.leaks.shm) == (1, 1, 1)
    assert "zombie" in cell.reason and "shm" in cell.reason

    clean = read_cell(
        write_cell(
            tmp_path / "c",
            CELL,
            results=ALL_OUTCOMES[:1],
            census={"processes": [], "zombies": 0},
            reap={"processes": [], "shm": [], "uds": []},
        )
    )
    assert clean.status == "ok"

    d = write_cell(tmp_path / "d", CELL, results=ALL_OUTCOMES[:1])
    (d / "census.json").write_text("[1, 2")
    assert read_cell(d).status == "error"


def test_cellmeta_keeps_its_pinned_fields() -> None:
    meta = CellMeta(
        cell=CELL,
        python="3.14",
        group="base",
        backend="trio",
        capture="fd",
        run_id="r",
        runner="local",
        outcome="completed",
    )
    again = msgspec.json.decode(msgspec.json.encode(meta), type=CellMeta)
    assert again == meta
    assert json.loads(msgspec.json.encode(meta))["version"] == 1


def test_damaged_raw_files_become_the_cells_error_and_never_hang_or_crash(tmp_path):
    deep = b"[" * 200_000 + b"]" * 200_000
    # Deep nesting where JSON is expected: RecursionError is damage, not a crash.
    d = write_cell(tmp_path, "py3.14-base-trio-capfd", results=[{"nodeid": "t.py::test_a", "outcome": "passed"}])
    (d / "reap.json").write_bytes(deep)
    cell = read_cell(d)
    assert cell.status == "error" and cell.reason.startswith("reap.json: maximum recursion depth")
    assert cell.tests["t.py::test_a"].status == "passed"  # what could be read is kept
    d = write_cell(tmp_path, "py3.14-base-trio-capsys", results=[{"nodeid": "t.py::test_a", "outcome": "passed"}])
    (d / "meta.json").write_bytes(b'{"cell":' * 100_000)
    assert read_cell(d).status == "error"
    # A FIFO where a raw file should be: read without blocking, reported as unreadable.
    d = write_cell(tmp_path, "py3.14-base-trio-capno", events=False, junit=None)
    os.mkfifo(d / "events.jsonl")
    cell = read_cell(d)
    assert cell.status == "error" and "events.jsonl unreadable" in cell.reason


def test_a_cell_cut_short_or_misfiled_is_an_error_naming_why(tmp_path):
    results = [{"nodeid": "t.py::test_a", "outcome": "passed"}]
    # Completed, but events.jsonl stops before pytest's finish event.
    d = write_cell(tmp_path, "py3.14-base-trio-capfd", results=results)
    events = (d / "events.jsonl").read_text().splitlines()
    (d / "events.jsonl").write_text("\n".join(events[:-1]) + "\n")
    cell = read_cell(d)
    assert (cell.status, cell.reason) == (
        "error",
        "events.jsonl ends before pytest's finish event: results after that are missing",
    )
    # A meta.json copied from another cell (a .bak directory, a copy by hand).
    src = write_cell(tmp_path, "py3.14-base-trio-capsys", results=results)
    bak = tmp_path / "py3.14-base-trio-capsys.bak"
    shutil.copytree(src, bak)
    cell = read_cell(bak)
    assert cell.status == "error"
    assert (
        cell.reason
        == "meta.json names cell py3.14-base-trio-capsys, but it is in the directory of py3.14-base-trio-capsys.bak"
    )


def test_reasons_leave_out_what_says_nothing_about_the_failure():
    from compat.results.events import failure_reason

    collapsed = "KeyError: ('rpc_server', 'x') ( ^^^ this exc was collapsed from a group ^^^ )"
    assert failure_reason(collapsed, "") == "KeyError: ('rpc_server', 'x')"
    diff = "AssertionError: assert 'a' == 'b'\n  - b\n  + a Use -v to get more diff"
    assert failure_reason(diff, "") == "AssertionError: assert 'a' == 'b' - b + a"


def test_a_node_id_naming_an_address_is_the_same_test_in_every_cell(tmp_path):
    from compat.paths import repro_command
    from compat.results.events import parse_events

    lines = [
        '{"event": "start", "nodeid": "t.py::test_rpc[f=<function f at 0x7f9b75992020>-async=True]", "t": 1}',
        '{"event": "result", "nodeid": "t.py::test_rpc[f=<function f at 0x7f9b75992020>-async=True]",'
        ' "outcome": "passed", "when": "call", "duration": 0.1}',
    ]
    events = parse_events("\n".join(lines).encode() + b"\n")
    assert list(events.results) == ["t.py::test_rpc[f=<function f at 0x…>-async=True]"]
    # Its repro names the function and its parameters: the address is another in a new process.
    repro = repro_command("cell", next(iter(events.results)))
    assert repro == "compat repro cell t.py::test_rpc -- -k 'async and True'"
