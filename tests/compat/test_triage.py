"""compat.triage: the "why" column from one-axis flips, re-run planning, stored re-runs."""

from __future__ import annotations

import itertools
from pathlib import Path

from compat.matrix import AxesConfig as Axes
from compat.matrix import Matrix
from compat.report import build_report
from compat.report.bench import write_cell
from compat.results import ledger as L
from compat.results.raw import read_cells
from compat.results.why import REPEATS, Observation, Rerun, TriageIndex, cell_id, explain, write_index
from compat.results.why import plan_reruns as plan

FULL = {
    "python": ("3.13", "3.14"),
    "group": ("base", "greenback", "cffi"),
    "backend": ("trio", "forkserver", "subint"),
    "capture": ("fd", "sys", "no"),
}
ALL = list(itertools.product(*FULL.values()))


def obs(fails, cells=ALL):
    return [Observation(c, fails(*c)) for c in cells]


def test_one_axis_labels() -> None:
    assert explain(obs(lambda p, g, b, c: c == "fd")) == "capture-sensitive: fails only with --capture=fd"
    assert explain(obs(lambda p, g, b, c: p == "3.14")) == "3.14-only"
    assert explain(obs(lambda p, g, b, c: b == "subint")) == "subint-only"
    assert explain(obs(lambda p, g, b, c: g != "greenback")) == "needs greenback"
    assert explain(obs(lambda p, g, b, c: c != "no")) == "capture-sensitive: passes only with --capture=no"


def test_nothing_to_explain() -> None:
    assert explain(obs(lambda *c: False)) == ""
    assert explain(obs(lambda *c: True)) == ""


def test_two_axes_together_are_not_one() -> None:
    label = explain(obs(lambda p, g, b, c: b == "subint" and c == "fd"))
    assert label == "no single axis explains it (fails in 6 of 54 cells)"


def test_too_few_cells_say_so() -> None:
    # Two cells differing in two axes: either could be the cause.
    cells = [("3.13", "base", "trio", "fd"), ("3.14", "base", "trio", "sys")]
    label = explain(obs(lambda p, g, b, c: p == "3.14", cells))
    assert label.startswith("unconfirmed: 3.14-only or capture-sensitive")
    # Three cells where both flips are seen but disagree on nothing: ambiguous only
    # when two axes each flip the outcome and stay consistent.
    cells = [("3.13", "base", "trio", "fd"), ("3.14", "base", "trio", "fd"), ("3.13", "base", "trio", "sys")]
    assert explain(obs(lambda p, g, b, c: p == "3.14", cells)) == "3.14-only"


def raw_with(tmp_path: Path, fails) -> Path:
    raw = tmp_path / "raw"
    for p, g, b, c in ALL:
        if b == "subint" and p == "3.13":
            write_cell(raw, cell_id((p, g, b, c)), outcome="unsupported", reason="needs 3.14")
            continue
        failed = fails(p, g, b, c)
        if failed is None:
            continue
        write_cell(
            raw,
            cell_id((p, g, b, c)),
            results=[{"nodeid": "t.py::test_x", "outcome": "failed" if failed else "passed", "message": "E   x"}],
        )
    return raw


def test_plan_is_bounded_and_skips_dead_and_observed_cells(tmp_path: Path) -> None:
    # Two cells were run, differing in two axes: one fails, one passes.
    ran = {("3.14", "base", "subint", "fd"): True, ("3.14", "base", "trio", "sys"): False}
    raw = raw_with(tmp_path, lambda *c: ran.get(c))
    cells = read_cells(raw)
    wanted = plan(cells, FULL, max_reruns=100)
    # Where it failed, REPEATS times, before anything else.
    assert wanted[:REPEATS] == [("t.py::test_x", ("3.14", "base", "subint", "fd"), "flaky")] * REPEATS
    targets = [a for _, a, p in wanted if p == "neighbour"]
    assert ("3.13", "base", "subint", "fd") not in targets  # unsupported
    assert set(targets) == {
        ("3.14", "greenback", "subint", "fd"),
        ("3.14", "cffi", "subint", "fd"),
        ("3.14", "base", "forkserver", "fd"),
        ("3.14", "base", "trio", "fd"),
        ("3.14", "base", "subint", "sys"),
        ("3.14", "base", "subint", "no"),
    }
    assert len(plan(cells, FULL, max_reruns=3)) == 3
    done = [("t.py::test_x", "py3.14-base-subint-capfd", "flaky")] * (REPEATS - 1)
    assert [p for _, _, p in plan(cells, FULL, 100, done)].count("flaky") == 1  # the repeats not done yet
    assert all(p != "flaky" for _, _, p in plan(cells, FULL, 100, done * 2))


def test_a_settled_pattern_needs_only_its_failure_seen_again(tmp_path: Path) -> None:
    # A pattern from one run is a label only once a re-run where it failed fails again: one re-run, no neighbours.
    raw = raw_with(tmp_path, lambda p, g, b, c: c == "fd")
    assert (
        plan(read_cells(raw), FULL, max_reruns=100)
        == [("t.py::test_x", ("3.13", "base", "forkserver", "fd"), "flaky")] * REPEATS
    )
    one = {("3.14", "base", "subint", "fd"): True, ("3.14", "base", "trio", "fd"): False}
    raw = raw_with(tmp_path / "one", lambda *c: one.get(c))
    assert (
        plan(read_cells(raw), FULL, max_reruns=100)
        == [("t.py::test_x", ("3.14", "base", "subint", "fd"), "flaky")] * REPEATS
    )


def test_stored_reruns_settle_the_label_and_mark_flaky(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_cell(
        raw,
        "py3.14-base-subint-capfd",
        results=[
            {"nodeid": "t.py::test_x", "outcome": "failed", "message": "E   subint broke"},
            {"nodeid": "t.py::test_f", "outcome": "failed", "message": "E   once"},
        ],
    )
    write_cell(
        raw,
        "py3.14-base-trio-capsys",
        results=[{"nodeid": "t.py::test_x", "outcome": "passed"}, {"nodeid": "t.py::test_f", "outcome": "passed"}],
    )
    matrix = Matrix(axes=Axes(python=("3.14",), group=("base",), backend=("trio", "subint"), capture=("fd", "sys")))
    out = tmp_path / "out"
    build_report(
        raw, out, baseline=Path("/dev/null"), summary=None, publish=True, fail_on_regression=False, matrix=matrix
    )
    before = {t.nodeid: t.why for t in L.decode((out / "compat.json").read_bytes()).tests}
    assert before["t.py::test_x"].startswith("unconfirmed: subint-only or capture-sensitive")

    tri = raw / "_triage"
    write_cell(tri / "0000", "py3.14-base-trio-capfd", results=[{"nodeid": "t.py::test_x", "outcome": "passed"}])
    write_cell(
        tri / "0000",
        "py3.14-base-subint-capsys",
        results=[{"nodeid": "t.py::test_x", "outcome": "failed", "message": "E   subint broke"}],
    )
    write_cell(tri / "0001", "py3.14-base-subint-capfd", results=[{"nodeid": "t.py::test_f", "outcome": "passed"}])
    write_index(
        raw,
        TriageIndex(
            reruns=[
                Rerun(
                    nodeid="t.py::test_x",
                    cell="py3.14-base-trio-capfd",
                    dir="0000/py3.14-base-trio-capfd",
                    purpose="neighbour",
                ),
                Rerun(
                    nodeid="t.py::test_x",
                    cell="py3.14-base-subint-capsys",
                    dir="0000/py3.14-base-subint-capsys",
                    purpose="neighbour",
                ),
                Rerun(
                    nodeid="t.py::test_f",
                    cell="py3.14-base-subint-capfd",
                    dir="0001/py3.14-base-subint-capfd",
                    purpose="flaky",
                ),
            ]
        ),
    )
    build_report(
        raw, out, baseline=Path("/dev/null"), summary=None, publish=True, fail_on_regression=False, matrix=matrix
    )
    ledger = L.decode((out / "compat.json").read_bytes())
    tests = {t.nodeid: t for t in ledger.tests}
    assert tests["t.py::test_x"].why == "subint-only"
    assert tests["t.py::test_f"].why.startswith("flaky")
    assert tests["t.py::test_f"].results["py3.14-base-subint-capfd"].status == "flaky"
    # Re-runs inform the label but are not cells of the published run.
    assert {c.id for c in ledger.cells} == {"py3.14-base-subint-capfd", "py3.14-base-trio-capsys"}
    md = (out / "COMPATIBILITY.md").read_text()
    assert "subint-only" in md and "🎲" in md
    assert "subint-only" in (out / "index.html").read_text()


def test_no_rerun_is_planned_where_the_test_does_not_exist(tmp_path: Path) -> None:
    # test_x[subint] fails on subint; trio cells ran and never collected it, so no trio neighbour is asked.
    raw = tmp_path / "raw"
    write_cell(raw, "py3.14-base-subint-capfd", results=[{"nodeid": "t.py::test_x[subint]", "outcome": "failed"}])
    write_cell(raw, "py3.14-base-trio-capfd", results=[{"nodeid": "t.py::test_x[trio]", "outcome": "passed"}])
    targets = {cells for _, cells, purpose in plan(read_cells(raw), FULL, 100) if purpose == "neighbour"}
    assert not any(backend == "trio" for _, _, backend, _ in targets)
    assert ("3.14", "greenback", "subint", "fd") in targets  # no greenback cell ran: nothing says it is absent


def test_repeated_reruns_where_it_failed_say_flaky_or_deterministic_with_their_counts():
    from compat.results.why import why_labels

    obs_cells = []  # no cells needed: the labels come from the re-runs' counts
    labels = why_labels(obs_cells, flaky={"t.py::test_f"}, repeats={"t.py::test_f": (1, 3), "t.py::test_d": (3, 3)})
    assert labels["t.py::test_f"] == "flaky (failed 1 of 3 re-runs where it failed)"
    assert labels["t.py::test_d"] == "deterministic (failed 3 of 3 re-runs where it failed)"


def test_a_collection_error_on_one_python_only_is_explained_by_the_python(tmp_path: Path) -> None:
    """Where the module collected, its tests ran: that is its pass there (no result names the module)."""
    from compat.results.why import why_labels

    raw = tmp_path / "raw"
    for python in ("3.13", "3.14"):
        for backend in ("trio", "subint"):
            results = (
                [{"nodeid": "t.py", "outcome": "error", "when": "collect", "message": "E   SyntaxError: bad"}]
                if python == "3.13"
                else [{"nodeid": "t.py::test_x", "outcome": "passed"}]
            )
            write_cell(raw, f"py{python}-base-{backend}-capfd", results=results)
    assert why_labels(read_cells(raw))["t.py"] == "3.13-only"
