"""compat.report: ledger, schema, COMPATIBILITY.md, job summary, baseline diff."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import msgspec
import pytest

from compat.errors import RegressionFound, ReportError
from compat.matrix import AxesConfig as Axes
from compat.matrix import Matrix
from compat.report import build_report
from compat.report.bench import synthetic_matrix, write_cell
from compat.report.markdown import SUMMARY_LIMIT, render_summary
from compat.report.view import KnownIssues
from compat.results import ledger as L
from tests.compat.places import ROOT

MATRIX = Matrix(axes=Axes(python=("3.13", "3.14"), group=("base",), backend=("trio", "subint"), capture=("fd", "sys")))

PASS = {"nodeid": "t.py::test_pass", "outcome": "passed"}
FAIL = {"nodeid": "t.py::test_fd", "outcome": "failed", "message": "E   AssertionError: wrong fd"}
XFAIL = {"nodeid": "t.py::test_xfail", "outcome": "xfailed", "reason": "hangs, see capture-fd-hang"}
SKIP = {"nodeid": "t.py::test_skip", "outcome": "skipped", "reason": "needs 3.14"}


def ok(nodeid: str) -> dict:
    return {"nodeid": nodeid, "outcome": "passed"}


def constructed(raw: Path) -> None:
    """A small matrix with one cell of each interesting kind."""
    write_cell(raw, "py3.13-base-trio-capfd", results=[PASS, FAIL, XFAIL, SKIP])
    write_cell(raw, "py3.13-base-trio-capsys", results=[PASS, ok(FAIL["nodeid"]), XFAIL, SKIP])
    write_cell(
        raw,
        "py3.14-base-trio-capfd",
        outcome="timeout",
        results=[PASS],
        running="t.py::test_fd",
        collected=["t.py::test_pass", "t.py::test_fd", "t.py::test_xfail"],
        reason="cell exceeded its 600 s bound while t.py::test_fd was running",
        dumps={"pytest-1.txt": "Thread 0x1:\n  File t.py, line 4 in test_fd\n"},
    )
    write_cell(
        raw,
        "py3.14-base-trio-capsys",
        results=[PASS, ok(FAIL["nodeid"]), XFAIL, ok(SKIP["nodeid"])],
        census={"processes": [{"pid": 9, "ppid": 1, "state": "S", "cmdline": "backends[child]"}], "zombies": 0},
    )
    write_cell(
        raw,
        "py3.13-base-subint-capfd",
        outcome="unsupported",
        reason="backend 'subint' is unavailable here: needs 3.14",
    )
    write_cell(raw, "py3.13-base-subint-capsys", outcome="unavailable", reason="no python3.13 image")
    write_cell(raw, "py3.14-base-subint-capfd", outcome="error", reason="container engine refused")
    d = write_cell(raw, "py3.14-base-subint-capsys", results=[PASS])
    (d / "meta.json").write_text("garbage{")


@pytest.fixture
def report(tmp_path: Path):
    raw, out = tmp_path / "raw", tmp_path / "reports"
    constructed(raw)
    known = tmp_path / "known-issues"
    known.mkdir()
    (known / "capture-fd-hang.md").write_text("# hang under fd\n")
    build_report(
        raw,
        out,
        baseline=Path("/dev/null"),
        summary=tmp_path / "summary.md",
        publish=True,
        fail_on_regression=False,
        matrix=MATRIX,
        known_issues=known,
    )
    return out


def test_every_cell_and_test_lands_in_the_ledger(report: Path) -> None:
    ledger = L.decode((report / "compat.json").read_bytes())
    assert ledger.schema_version == L.SCHEMA_VERSION and ledger.run_id == "run-1"
    cells = {c.id: c for c in ledger.cells}
    assert {k: c.status for k, c in cells.items()} == {
        "py3.13-base-trio-capfd": "failing",
        "py3.13-base-trio-capsys": "ok",
        "py3.14-base-trio-capfd": "timeout",
        "py3.14-base-trio-capsys": "leaked",
        "py3.13-base-subint-capfd": "unsupported",
        "py3.13-base-subint-capsys": "unavailable",
        "py3.14-base-subint-capfd": "error",
        "py3.14-base-subint-capsys": "error",
    }
    assert cells["py3.13-base-subint-capfd"].reason == "backend 'subint' is unavailable here: needs 3.14"
    assert "meta.json is damaged" in cells["py3.14-base-subint-capsys"].reason
    assert cells["py3.13-base-trio-capfd"].counts == {"passed": 1, "failed": 1, "xfailed": 1, "skipped": 1}
    assert cells["py3.13-base-trio-capfd"].environment.packages["trio"] == "0.31.0"
    assert cells["py3.13-base-trio-capfd"].environment.image == "sha256:abc"
    assert cells["py3.14-base-trio-capsys"].leaks.processes == 1
    assert ledger.axes["backend"] == ("trio", "subint")

    tests = {t.nodeid: t for t in ledger.tests}
    fd = tests["t.py::test_fd"].results
    assert fd["py3.13-base-trio-capfd"].status == "failed"
    assert fd["py3.13-base-trio-capfd"].reason == "AssertionError: wrong fd"
    assert fd["py3.14-base-trio-capfd"].status == "timeout"
    assert "line 4 in test_fd" in fd["py3.14-base-trio-capfd"].message
    # Never reached in the cell that died (it collected it); no row for cells
    # never run, nor for a test the dead cell never collected.
    assert tests["t.py::test_xfail"].results["py3.14-base-trio-capfd"].status == "not-run"
    assert "py3.14-base-trio-capfd" not in tests["t.py::test_skip"].results
    assert "py3.13-base-subint-capfd" not in tests["t.py::test_xfail"].results
    assert tests["t.py::test_xfail"].results["py3.13-base-trio-capfd"].reason == "hangs, see capture-fd-hang"
    # One run's pattern is a hint, not a label: no re-run has confirmed it.
    assert tests["t.py::test_fd"].why == (
        "unconfirmed: capture-sensitive: fails only with --capture=fd (from one run; `compat run --triage` re-runs it)"
    )


def test_the_ledger_validates_against_the_published_schema(report: Path) -> None:
    schema = json.loads((ROOT / "reports" / "compat.schema.json").read_text())
    jsonschema.validate(json.loads((report / "compat.json").read_bytes()), schema)


def test_the_committed_schema_is_current() -> None:
    committed = (ROOT / "reports" / "compat.schema.json").read_text()
    assert committed == L.schema_text(), "run: python -m compat.report --schema"


def test_markdown_leads_with_counts_then_a_grid_that_fits_then_the_problems(report: Path) -> None:
    md = (report / "COMPATIBILITY.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Compatibility: spawn-compat" or lines[0].startswith("# Compatibility: spawn-compat @ ")
    assert str(ROOT) not in md and "/tmp/" not in md
    counts = lines[4]
    assert counts.startswith("**1 of 8 cells ok** · 1 failing · 1 timeout · 1 leaked · 2 error · 2 n/a")
    assert counts.endswith("— **1 test(s) failing somewhere**")  # test_fd: failed in one cell, timed out in another
    header = next(i for i, line in enumerate(lines) if line.startswith("| | "))
    assert lines[header] == "| | trio<br>fd | trio<br>sys | subint<br>fd | subint<br>sys |"
    row13, row14 = lines[header + 2], lines[header + 3]
    assert row13.startswith("| **3.13 base** | ") and row14.startswith("| **3.14 base** | ")
    assert '<span title="failing: 1 passed / 1 xfail / 1 skip / 1 fail; failing: t.py::test_fd">❌ 1</span>' in row13
    assert [sym in row13 for sym in ("❌", "✅", "🚫", "➖")] == [True] * 4
    assert "⏱️" in row14 and "💧" in row14 and row14.count("💥") == 2

    problems = md.split("## Failing, timing out, flaky, leaking\n", 1)[1].split("\n## ", 1)[0]
    assert "- ⏱️ `t.py::test_fd` **times out** in 3.14 · trio · fd" in problems
    assert "- ❌ `t.py::test_fd` **fails** in 3.13 · trio · fd — AssertionError: wrong fd" in problems
    assert "repro: `compat repro py3.13-base-trio-capfd t.py::test_fd`" in problems  # no config: the installed tool
    assert "t.py::test_pass" not in problems  # plainly passing everywhere
    assert "- 💧 `py3.14-base-trio-capsys`: 1 process(es)" in problems
    assert "- 💥 `py3.14-base-subint-capfd` **error**: container engine refused" in problems
    assert "unsupported" not in problems and "unavailable" not in problems  # n/a is not a problem

    expected = md.split("## Expected failures\n", 1)[1].split("\n## ", 1)[0]
    assert "`t.py::test_xfail` **xfails** in " in expected
    assert "hangs, see [capture-fd-hang](../known-issues/capture-fd-hang.md)" in expected

    folded = md.split("## Skips and n/a\n", 1)[1].split("\n## ", 1)[0]
    assert "<details><summary>2 cell(s) n/a</summary>" in folded
    assert "- 1 cell(s): backend 'subint' is unavailable here: needs 3.14 — 3.13 · subint · fd" in folded
    assert "<details><summary>2 skip(s), 1 reason(s)</summary>" in folded
    assert "- 2 skip(s): needs 3.14 — 3.13 · trio · every capture" in folded
    assert md.index("## Summary") < md.index("## Failing") < md.index("## Expected failures") < md.index("## Legend")
    grid = lines[header : header + 4]
    assert max(len(line) for line in lines if line not in grid) < 400
    assert max(len(line) for line in grid) < 120 * 5


def test_summary_is_written_and_bounded(report: Path, tmp_path: Path) -> None:
    text = (tmp_path / "summary.md").read_text()
    assert "| **3.13 base** |" in text and "Truncated" not in text


def test_summary_stays_under_one_mib_for_any_matrix() -> None:
    cells = tuple(
        L.LedgerCell(
            id=f"py3.{p}-g{g}-b{b}-capfd",
            python=f"3.{p}",
            group=f"g{g}",
            backend=f"b{b}",
            capture="fd",
            status="failing",
        )
        for p in range(10)
        for g in range(10)
        for b in range(3)
    )
    tests = tuple(
        L.LedgerTest(
            nodeid=f"tests/test_{i}.py::test_{'x' * 80}_{i}",
            results={c.id: L.LedgerResult(status="failed", reason="E " + "y" * 100) for c in cells[:40]},
        )
        for i in range(3000)
    )
    ledger = L.Ledger(
        run_id="big",
        timestamp=0.0,
        axes=L.axes_of((), None)
        | {
            "python": tuple(f"3.{p}" for p in range(10)),
            "group": tuple(f"g{g}" for g in range(10)),
            "backend": ("b0", "b1", "b2"),
            "capture": ("fd",),
        },
        cells=cells,
        tests=tests,
    )
    text = render_summary(ledger, KnownIssues(None), "the index.html artifact")
    assert len(text.encode()) < SUMMARY_LIMIT
    # Lists are capped, so the summary says how many more there are instead of being cut.
    assert "- … and 2900 more (see compat.json or index.html)" in text
    tight = render_summary(ledger, KnownIssues(None), "the index.html artifact", limit=4096)
    assert len(tight.encode()) < 4096 + 512 and "Truncated" in tight and "the index.html artifact" in tight


def _rebuild(tmp_path: Path, raw: Path, baseline: Path, fail: bool = False) -> L.Ledger:
    out = tmp_path / "out2"
    build_report(raw, out, baseline=baseline, summary=None, publish=True, fail_on_regression=fail, matrix=MATRIX)
    return L.decode((out / "compat.json").read_bytes())


def test_baseline_diff_names_every_kind_of_change(report: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw2"
    write_cell(
        raw,
        "py3.13-base-trio-capfd",
        results=[
            {"nodeid": PASS["nodeid"], "outcome": "failed", "message": "E   now broken"},  # new failure
            ok(FAIL["nodeid"]),  # fixed
            {**XFAIL, "outcome": "xpassed", "strict": False},  # xfail now passes
            SKIP,
        ],
    )
    write_cell(
        raw,
        "py3.13-base-trio-capsys",
        results=[
            {**PASS, "outcome": "skipped", "reason": "disabled"},  # new skip
            {"nodeid": FAIL["nodeid"], "outcome": "failed"},
            {"nodeid": FAIL["nodeid"], "outcome": "passed"},  # flaky
            ok(XFAIL["nodeid"]),  # marker gone: fixed
            SKIP,
        ],
    )
    ledger = _rebuild(tmp_path, raw, report / "compat.json")
    diff = ledger.diff
    assert diff is not None and diff.baseline_run_id == "run-1"
    kinds = {(c.kind, c.nodeid, c.cell) for c in diff.changes}
    assert ("new-failure", PASS["nodeid"], "py3.13-base-trio-capfd") in kinds
    assert ("fixed", FAIL["nodeid"], "py3.13-base-trio-capfd") in kinds
    assert ("xfail-now-passes", XFAIL["nodeid"], "py3.13-base-trio-capfd") in kinds
    assert ("fixed", XFAIL["nodeid"], "py3.13-base-trio-capsys") in kinds
    assert ("new-skip", PASS["nodeid"], "py3.13-base-trio-capsys") in kinds
    assert ("flaky", FAIL["nodeid"], "py3.13-base-trio-capsys") in kinds
    assert ("cell-status", None, "py3.13-base-trio-capsys") not in kinds  # ok -> ok
    assert any(c.kind == "cell-status" and c.cell == "py3.13-base-trio-capfd" for c in diff.changes) is False

    md = (tmp_path / "out2" / "COMPATIBILITY.md").read_text()
    section = md.split("## Changes since the last published report\n", 1)[1].split("\n## ", 1)[0]
    for title in ("New failures (1)", "Fixed (2)", "Xfails that now pass (1)", "New skips (1)", "Newly flaky (1)"):
        assert f"**{title}" in section
    # Two of the baseline's eight cells ran: the other six are not "unchanged".
    assert "**Not run in this run:** 6 cell(s) of the baseline" in section
    assert "No changes" not in section
    assert "**Partial run:** 2 of 8 cells ran (6 not)" in md
    html = (tmp_path / "out2" / "index.html").read_text()
    assert 'data-kind="new-failure"' in html and 'id="not-run"' in html

    with pytest.raises(RegressionFound, match=r"1 regression\(s\) since .*t.py::test_pass in py3.13-base-trio-capfd"):
        _rebuild(tmp_path, raw, report / "compat.json", fail=True)


def test_cells_whose_status_changed(report: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw3"
    write_cell(raw, "py3.13-base-trio-capsys", outcome="timeout", running=PASS["nodeid"], results=[])
    ledger = _rebuild(tmp_path, raw, report / "compat.json")
    change = next(c for c in ledger.diff.changes if c.kind == "cell-worse")
    assert (change.cell, change.before, change.after) == ("py3.13-base-trio-capsys", "ok", "timeout")
    assert any(c.kind == "new-failure" and c.after == "timeout" for c in ledger.diff.changes)


def test_no_regression_means_exit_zero_and_a_damaged_baseline_is_reported(report: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw4"
    constructed(raw)
    assert (
        build_report(
            raw,
            tmp_path / "o",
            baseline=report / "compat.json",
            summary=None,
            publish=True,
            fail_on_regression=True,
            matrix=MATRIX,
        )
        == 0
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"run_id": 5}')
    ledger = _rebuild(tmp_path, raw, bad, fail=True)
    assert "not a readable ledger" in ledger.diff.problem


def test_default_baseline_is_the_previous_ledger(report: Path) -> None:
    raw = report.parent / "raw"
    build_report(raw, report, baseline=None, summary=None, publish=True, fail_on_regression=True, matrix=MATRIX)
    ledger = L.decode((report / "compat.json").read_bytes())
    assert ledger.diff.baseline.endswith("compat.json") and ledger.diff.problem == ""


def test_a_wholly_damaged_raw_dir_still_reports_every_cell(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for i, damage in enumerate(["events.jsonl", "meta.json", "junit.xml", "census.json", "reap.json"]):
        d = write_cell(raw, f"py3.13-base-trio-cap{i}", results=[PASS], junit="<x/>")
        (d / damage).write_bytes(b"\xff\x00{{{")
    (raw / "py3.13-base-trio-cap9").mkdir()  # a directory and nothing in it
    build_report(
        raw, tmp_path / "out", baseline=Path("/dev/null"), summary=None, publish=True, fail_on_regression=False
    )
    ledger = L.decode((tmp_path / "out" / "compat.json").read_bytes())
    assert len(ledger.cells) == 6
    status = {c.id: c.status for c in ledger.cells}
    # JUnit is only read when there are no events, so its damage alone is harmless.
    assert status.pop("py3.13-base-trio-cap2") == "ok"
    assert set(status.values()) == {"error"}
    assert all(c.reason for c in ledger.cells if c.status == "error")


def test_no_raw_results_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no raw results"):
        build_report(tmp_path / "nope", tmp_path, baseline=None, summary=None, publish=True, fail_on_regression=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no cell directories"):
        build_report(tmp_path / "empty", tmp_path, baseline=None, summary=None, publish=True, fail_on_regression=False)


def test_a_full_matrix_reports_in_under_a_second_of_cpu(tmp_path: Path) -> None:
    synthetic_matrix(tmp_path / "raw", tests=100)
    full = Matrix(axes=Axes())
    start = time.process_time()
    build_report(
        tmp_path / "raw",
        tmp_path / "out",
        baseline=Path("/dev/null"),
        summary=tmp_path / "s.md",
        publish=True,
        fail_on_regression=False,
        matrix=full,
    )
    assert time.process_time() - start <= 1.0
    ledger = msgspec.json.decode((tmp_path / "out" / "compat.json").read_bytes())
    assert len(ledger["cells"]) == 54
