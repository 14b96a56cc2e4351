"""The report across runs: partial runs, another target's baseline, regressions, history, the badge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compat.errors import RegressionFound
from compat.report import build_report
from compat.report.bench import write_cell
from compat.report.history import History
from compat.report.markdown import md_code, md_text
from compat.results import ledger as L
from tests.compat.report.test_report import FAIL, MATRIX, PASS, XFAIL, constructed, ok

CELLS = [
    "py3.13-base-trio-capfd", "py3.13-base-trio-capsys", "py3.14-base-trio-capfd", "py3.14-base-trio-capsys",
    "py3.13-base-subint-capfd", "py3.13-base-subint-capsys", "py3.14-base-subint-capfd", "py3.14-base-subint-capsys",
]  # fmt: skip


def full_run(raw: Path, run_id: str, *, started: float, results: dict[str, list[dict]] | None = None) -> None:
    for cell in CELLS:
        write_cell(
            raw, cell, results=(results or {}).get(cell, [PASS]),
            meta_fields={"run_id": run_id, "started": started},
        )  # fmt: skip


def report(raw: Path, out: Path, **kwargs) -> L.Ledger:
    kwargs.setdefault("baseline", None)
    build_report(raw, out, summary=None, fail_on_regression=kwargs.pop("fail", False), matrix=MATRIX, **kwargs)
    where = out / "partial" if kwargs.get("publish") is not True and (out / "partial" / "compat.json").exists() else out
    return L.decode((where / "compat.json").read_bytes())


def test_a_partial_run_is_written_next_to_the_published_table_and_says_what_did_not_run(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    full_run(raw, "full", started=1.0)
    published = report(raw, out, baseline=Path("/dev/null"))
    assert published.partial == "" and not (out / "partial").exists()
    before = (out / "COMPATIBILITY.md").read_text()

    # A later run of two cells, narrowed by -k: only those are this run.
    for cell in CELLS[:2]:
        write_cell(
            raw, cell, results=[PASS], meta_fields={"run_id": "narrow", "started": 2.0, "selection": ["-k", "cancel"]}
        )
    partial = report(raw, out)
    assert {c.id for c in partial.cells} == set(CELLS[:2])
    assert partial.partial == "2 of 8 cells ran (6 not); narrowed by pytest arguments: -k cancel"
    assert (out / "COMPATIBILITY.md").read_text() == before  # the published table is untouched
    md = (out / "partial" / "COMPATIBILITY.md").read_text()
    assert "> **Partial run:** 2 of 8 cells ran (6 not); narrowed by pytest arguments: -k cancel" in md
    assert "not run in this run: 6 cell(s)" in md and "No changes." not in md
    assert partial.diff is not None and len(partial.diff.not_run_cells) == 6
    assert json.loads((out / "partial" / "badge.json").read_text())["message"].endswith("(partial)")

    published_again = report(raw, out, publish=True)
    assert published_again.partial and (out / "COMPATIBILITY.md").read_text() != before


def test_another_targets_table_is_never_the_baseline(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    full_run(raw, "r1", started=1.0)
    first = report(raw, out, baseline=Path("/dev/null"))
    other = msgspec_replace_target(first, "tractor")
    (tmp_path / "other.json").write_bytes(L.encode(other))
    ledger = report(raw, out, baseline=tmp_path / "other.json")
    assert ledger.diff is not None and ledger.diff.changes == ()
    assert ledger.diff.problem.startswith("no baseline: ") and "'tractor'" in ledger.diff.problem


def msgspec_replace_target(ledger: L.Ledger, name: str) -> L.Ledger:
    import msgspec

    return msgspec.structs.replace(ledger, target=L.TargetInfo(name=name))


def test_regressions_include_strict_xpasses_and_cells_that_got_worse_and_a_flaky_test_is_news_once(
    tmp_path: Path,
) -> None:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    flaky = [{"nodeid": FAIL["nodeid"], "outcome": "failed"}, {"nodeid": FAIL["nodeid"], "outcome": "passed"}]
    strict_xfail = {**XFAIL, "strict": True}
    full_run(raw, "r1", started=1.0, results={CELLS[0]: [PASS, strict_xfail, *flaky]})
    report(raw, out, baseline=Path("/dev/null"))
    xpass = {**XFAIL, "outcome": "xpassed", "strict": True}
    full_run(raw, "r2", started=2.0, results={CELLS[0]: [PASS, xpass, *flaky]})
    write_cell(raw, CELLS[1], outcome="timeout", running=PASS["nodeid"], meta_fields={"run_id": "r2", "started": 2.0})
    with pytest.raises(RegressionFound) as info:
        report(raw, out, fail=True)
    message = str(info.value)
    assert "t.py::test_xfail in py3.13-base-trio-capfd xfailed -> xpassed (strict xfail)" in message
    assert "cell py3.13-base-trio-capsys ok -> timeout" in message
    ledger = L.decode((out / "compat.json").read_bytes())
    assert ledger.diff is not None and ledger.diff.of("flaky") == []  # flaky in the baseline too


def test_history_gives_rates_and_since_when_and_stays_small(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    for i in range(6):
        failing = i >= 3
        result = {"nodeid": FAIL["nodeid"], "outcome": "failed", "message": "E boom"} if failing else ok(FAIL["nodeid"])
        full_run(raw, f"r{i}", started=float(i) + 1_800_000_000, results={CELLS[0]: [PASS, result]})
        report(raw, out, baseline=Path("/dev/null"))
    history, problem = History.read(out / "history.jsonl")
    assert problem == "" and [r.run_id for r in history.records] == [f"r{i}" for i in range(6)]
    md = (out / "COMPATIBILITY.md").read_text()
    assert "failed 3 of the last 6 runs in py3.13-base-trio-capfd; failing since 2027-01-15 (run r3)" in md
    # The same run reported twice is one record.
    report(raw, out, baseline=Path("/dev/null"))
    assert len(History.read(out / "history.jsonl")[0].records) == 6
    # A damaged line is skipped and said, not fatal.
    with open(out / "history.jsonl", "a") as f:
        f.write("{not json\n")
    assert History.read(out / "history.jsonl")[1].endswith("1 damaged line(s) skipped")


def test_the_badge_counts_applicable_cells(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    constructed(raw)
    report(raw, out, baseline=Path("/dev/null"), publish=True)
    badge = json.loads((out / "badge.json").read_text())
    assert badge == {"schemaVersion": 1, "label": "compat", "message": "1/6 cells ok, 2 n/a", "color": "red"}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("t.py::test_x[a|b]", "`t.py::test_x[a\\|b]`"),
        ("t.py::test_x[`q`]", "``t.py::test_x[`q`]``"),
        ("`edge`", "`` `edge` ``"),
        ("plain", "`plain`"),
    ],
)
def test_node_ids_with_pipes_and_backticks_stay_one_code_span_in_one_cell(text: str, code: str) -> None:
    assert md_code(text) == code
    assert md_text("a | b *c* `d` <e>") == "a \\| b \\*c\\* \\`d\\` &lt;e&gt;"


def test_a_hundred_runs_of_the_default_matrix_stay_under_five_megabytes(tmp_path: Path) -> None:
    import msgspec

    from compat.matrix import AxesConfig, Matrix
    from compat.report.bench import FULL_AXES, synthetic_matrix
    from compat.report.build import make_ledger
    from compat.report.history import record
    from compat.results.raw import read_cells

    synthetic_matrix(tmp_path / "raw", tests=100)  # 54 cells x 100 tests, a failing/xfail/skip mix
    matrix = Matrix(axes=msgspec.convert(FULL_AXES, AxesConfig))
    ledger = make_ledger(read_cells(tmp_path / "raw"), tmp_path / "raw", matrix)
    history = History([])
    for i in range(100):
        history = history.with_run(record(msgspec.structs.replace(ledger, run_id=f"run-{i}")))
    history.write(tmp_path / "history.jsonl")
    assert (tmp_path / "history.jsonl").stat().st_size < 5 * 1024 * 1024
    assert len(History.read(tmp_path / "history.jsonl")[0].records) == 100


def test_where_is_said_against_the_cells_that_ran_and_names_a_test_that_fails_wherever_it_exists(
    tmp_path: Path,
) -> None:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    for capture in ("fd", "sys"):
        write_cell(raw, f"py3.14-base-trio-cap{capture}", results=[ok("t.py::test_a[trio]")])
        failed = {"nodeid": "t.py::test_a[subint]", "outcome": "failed", "message": "E boom"}
        write_cell(raw, f"py3.14-base-subint-cap{capture}", results=[failed])
    report(raw, out, baseline=Path("/dev/null"), publish=True)
    md = (out / "COMPATIBILITY.md").read_text()
    assert "`t.py::test_a[subint]` **fails** in subint · every capture (every cell that ran it)" in md


def test_known_issue_references_become_links_however_they_are_written(tmp_path: Path) -> None:
    from compat.report.view import KnownIssues

    (tmp_path / "capture-fd-hang.md").write_text("# x\n")
    known = KnownIssues(tmp_path, "../docs/known-issues/")
    for text in (
        "see capture-fd-hang",
        "see known-issues/capture-fd-hang.md",
        "see docs/known-issues/capture-fd-hang.md",
    ):
        linked = known.link(text, lambda t, href: f"[{t}]({href})", str)
        assert "](../docs/known-issues/capture-fd-hang.md)" in linked, linked
    assert known.link("see not-capture-fd-hang-x", lambda t, h: "LINK", str) == "see not-capture-fd-hang-x"


def test_a_rerun_of_some_cells_folds_into_the_full_table_each_cell_marked_with_its_run(tmp_path: Path) -> None:
    from compat.results.runs import RUNS_LOG

    raw, out = tmp_path / "raw", tmp_path / "reports"
    full_run(raw, "full", started=1.0, results={CELLS[0]: [FAIL], CELLS[1]: [FAIL]})
    # `compat run --failed`: the two failing cells again, now passing.
    for cell in CELLS[:2]:
        write_cell(raw, cell, results=[PASS], meta_fields={"run_id": "again", "started": 2.0})
    (raw / RUNS_LOG).write_text(
        json.dumps({"run_id": "full", "finished": 1.5, "cells": CELLS})
        + "\n"
        + json.dumps({"run_id": "again", "finished": 2.5, "cells": CELLS[:2]})
        + "\n"
    )
    ledger = report(raw, out, baseline=Path("/dev/null"))
    assert ledger.partial == ""  # complete: a full table, published
    assert {c.id: c.run_id for c in ledger.cells} == {c: "again" if c in CELLS[:2] else "full" for c in CELLS}
    assert all(c.status == "ok" for c in ledger.cells)
    md = (out / "COMPATIBILITY.md").read_text()
    assert "> **Folded:** each cell's newest result since the last full run: 2 from `again`, 6 from `full`." in md
    # Without the run log (results of an older compat), only the newest run is the table, as before.
    (raw / RUNS_LOG).unlink()
    assert report(raw, tmp_path / "other").partial.startswith("2 of 8 cells ran")


def test_a_cell_made_from_other_target_files_than_the_current_ones_is_stale(tmp_path: Path) -> None:
    import msgspec

    from compat.matrix import TargetConfig
    from compat.results.runs import RUNS_LOG

    target = tmp_path / "target"
    (target / "tests").mkdir(parents=True)
    (target / "tests" / "test_x.py").write_text("def test_x(): pass\n")
    matrix = msgspec.structs.replace(MATRIX, target=TargetConfig(path=str(target), tests=("tests",)))
    raw = tmp_path / "raw"
    full_run(raw, "full", started=1.0)
    (raw / RUNS_LOG).write_text(json.dumps({"run_id": "full", "finished": 1.5, "cells": CELLS}) + "\n")
    from compat.runners.cache import target_file_digests

    now = target_file_digests(matrix, raw)
    for cell in CELLS:
        (raw / cell / "inputs.json").write_text(json.dumps(now))
    (raw / CELLS[3] / "inputs.json").write_text(json.dumps({**now, "tests/test_x.py": "0" * 64}))
    build_report(raw, tmp_path / "out", baseline=Path("/dev/null"), summary=None, fail_on_regression=False,
                 matrix=matrix)  # fmt: skip
    ledger = L.decode((tmp_path / "out" / "compat.json").read_bytes())
    assert [c.id for c in ledger.cells if c.stale] == [CELLS[3]]
    md = (tmp_path / "out" / "COMPATIBILITY.md").read_text()
    assert f"> **Stale:** 1 cell(s) ran before the target's files last changed: `{CELLS[3]}`" in md


def test_the_table_says_what_ran_and_counts_each_failing_grid_cell(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "reports"
    full_run(raw, "full", started=1.0, results={CELLS[0]: [FAIL, PASS]})
    report(raw, out, baseline=Path("/dev/null"))
    md = (out / "COMPATIBILITY.md").read_text()
    assert "## What ran" in md and "- CPython 3.13.0 (4 cells), 3.14.0 (4 cells)" in md
    assert "- in every cell: pytest 9.0.0" in md
    assert "failing: t.py::test_fd" in md and "❌ 1</span>" in md  # the mark counts, the hover names


def test_known_issue_links_work_from_a_partial_report_and_from_a_published_site(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "docs" / "known-issues").mkdir(parents=True)
    (repo / "docs" / "known-issues" / "capture-fd-hang.md").write_text("# the hang\n")
    raw, out = repo / "reports" / "raw", repo / "reports"
    hang = {"nodeid": "t.py::test_fd", "outcome": "failed", "message": "E   AssertionError: see capture-fd-hang"}
    full_run(raw, "full", started=1.0, results={CELLS[0]: [hang]})
    for cell in CELLS[:1]:  # a later run of one cell: a partial report, one level deeper
        write_cell(raw, cell, results=[hang], meta_fields={"run_id": "one", "started": 2.0})
    build_report(raw, out, baseline=Path("/dev/null"), summary=None, fail_on_regression=False, matrix=MATRIX,
                 known_issues=repo / "docs" / "known-issues")  # fmt: skip
    md = (out / "partial" / "COMPATIBILITY.md").read_text()
    assert "](../../docs/known-issues/capture-fd-hang.md)" in md
    assert (out / "partial" / "../../docs/known-issues/capture-fd-hang.md").resolve().is_file()
    # In GitHub Actions the report is a site with no docs/ beside it: the repository's page of the file.
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "owner/runtime")
    monkeypatch.setenv("GITHUB_SHA", "abc123")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
    site = repo / "reports" / "site"
    build_report(raw, site, baseline=Path("/dev/null"), summary=None, fail_on_regression=False, matrix=MATRIX,
                 known_issues=repo / "docs" / "known-issues", publish=True)  # fmt: skip
    html = (site / "index.html").read_text()
    assert "https://github.com/owner/runtime/blob/abc123/docs/known-issues/capture-fd-hang.md" in html
