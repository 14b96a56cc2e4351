"""The fixture target through the real pipeline: runner -> triage -> report, all three formats.

Runs eight cells with the ``local`` runner (host interpreters in uv venvs),
so it needs uv and Python 3.13 on the host; a missing 3.14 is itself an
expected outcome (the cell is ``unavailable``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from compat.matrix import AxesConfig as Axes
from compat.matrix import Cell, Matrix
from compat.matrix import CellBounds as Timeouts
from compat.matrix import TargetConfig as Target
from compat.report import build_report
from compat.results import ledger as L
from compat.results.status import TEST, TESTS, row_of
from compat.triage import run as run_triage
from tests.compat.places import fixture

FIXTURE = fixture("target")
OUT, H = "cases/cases_outcomes.py::", "cases/cases_zz_hang.py::"

MATRIX = Matrix(
    axes=Axes(
        python=("3.13", "3.14"),
        group=("base", "greenback"),
        backend=("trio", "forkserver", "subint"),
        capture=("fd", "sys", "no"),
    ),
    target=Target(
        path=str(FIXTURE),
        tests=("cases",),
        backend_option="--target-backend",
        requirements=("requirements.txt",),
        group_map={"greenback": "requirements-greenback.txt"},
    ),
    # The two bounds alike: the cell's (it starts first) ends the hang, so the table shows a cell
    # `timeout` and the test after it `not-run`; test_forensics.py has the per-test bound's own path.
    timeouts=Timeouts(per_test=10.0, per_cell=10.0),
)
A = "py3.13-base-forkserver-capfd"  # runs first: the flaky test's first run is here
B = "py3.13-base-trio-capsys"
C = "py3.13-greenback-trio-capsys"
D = "py3.13-greenback-trio-capfd"
E = "py3.13-greenback-trio-capno"  # the leak
F = "py3.13-greenback-forkserver-capno"  # the hang
G = "py3.13-greenback-subint-capsys"  # the availability gate
U = "py3.14-greenback-trio-capsys"  # no 3.14 on the host, or a normal cell where there is one


def cells() -> list[Cell]:
    out = []
    for cid in (A, B, C, D, E, F, G, U):
        py, group, backend, cap = re.fullmatch(r"py([^-]+)-([^-]+)-([^-]+)-cap(.+)", cid).groups()
        out.append(Cell(py, group, backend, cap))
    return out


def has_python(version: str) -> bool:
    from compat.runners.local import find_python

    return find_python(version) is not None


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("uv") is None or not has_python("3.13"):
        pytest.skip("the local runner needs uv and Python 3.13 on the host")
    from compat.runners.schedule import run_cells

    tmp = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIXTURE_STATE_DIR", str(tmp / "state"))  # the local runner passes the environment on
    try:
        raw = tmp / "raw"
        run_cells(MATRIX, cells(), runner="local", out_dir=raw, progress=False)
        run_triage(MATRIX, raw, max_reruns=8)
    finally:
        mp.undo()
    known = tmp / "known-issues"
    known.mkdir()
    (known / "fixture-known-issue.md").write_text("# the fixture's known issue\n")
    out = tmp / "reports"
    build_report(
        raw,
        out,
        baseline=Path("/dev/null"),
        summary=tmp / "summary.md",
        publish=True,
        fail_on_regression=False,
        matrix=MATRIX,
        known_issues=known,
    )
    return out


# (test, cell) -> (status, a fragment of the reason); cells not named pass.
EXPECTED = {
    (OUT + "test_fails_only_on_forkserver", A): ("failed", "forkserver"),
    (OUT + "test_fails_only_on_forkserver", F): ("failed", "forkserver"),
    (OUT + "test_setup_error_under_fd", A): ("error", "fixture cannot start under capture=fd"),
    (OUT + "test_setup_error_under_fd", D): ("error", "fixture cannot start under capture=fd"),
    (OUT + "test_fails_only_with_capture_fd", A): ("failed", "'fd' != 'fd'"),
    (OUT + "test_fails_only_with_capture_fd", D): ("failed", "'fd' != 'fd'"),
    (OUT + "test_needs_greenback", A): ("failed", "greenback is not installed"),
    (OUT + "test_needs_greenback", B): ("failed", "greenback is not installed"),
    (OUT + "test_flaky_first_run_fails", A): ("flaky", "failed, then passed on re-run"),
    (OUT + "test_xpasses_strict_on_forkserver", A): ("xpassed", "forkserver was broken"),
    (OUT + "test_xpasses_strict_on_forkserver", F): ("xpassed", "forkserver was broken"),
    (H + "test_hangs_on_forkserver_capture_no", F): ("timeout", "10 s bound"),
    (H + "test_after_the_hang", F): ("not-run", "never reached"),
}
EVERYWHERE = {
    OUT + "test_xfails_with_reason": ("xfailed", "known: see fixture-known-issue"),
    OUT + "test_xpasses_non_strict": ("xpassed", "was broken, now passes"),
    OUT + "test_skips_with_reason": ("skipped", "not relevant to this target"),
}
# The triage budget (8) re-runs failures where they failed, in node-id order: 3 + 3 + 2 re-runs, then
# nothing is left for the last two, which stay unconfirmed.
SEEN_THRICE = "deterministic (failed 3 of 3 re-runs where it failed); "
WHY = {
    OUT + "test_fails_only_on_forkserver": SEEN_THRICE + "forkserver-only",
    OUT + "test_setup_error_under_fd": "unconfirmed: capture-sensitive: fails only with --capture=fd",
    OUT + "test_fails_only_with_capture_fd": SEEN_THRICE + "capture-sensitive: fails only with --capture=fd",
    OUT + "test_needs_greenback": "unconfirmed: needs greenback",
    OUT + "test_flaky_first_run_fails": "flaky (failed 0 of 2 re-runs where it failed)",
    H + "test_hangs_on_forkserver_capture_no": "no single axis explains it",
}
RAN = (A, B, C, D, E, F)


def expected(nodeid: str, cell: str) -> tuple[str, str]:
    if (nodeid, cell) in EXPECTED:
        return EXPECTED[(nodeid, cell)]
    return EVERYWHERE.get(nodeid, ("passed", ""))


def test_cells_land_with_the_right_status(pipeline: Path) -> None:
    ledger = L.decode((pipeline / "compat.json").read_bytes())
    status = {c.id: (c.status, c.reason) for c in ledger.cells}
    assert [status[c][0] for c in RAN] == ["failing", "failing", "ok", "failing", "leaked", "timeout"]
    assert "sleep(120)" in " ".join(next(c for c in ledger.cells if c.id == E).leaks.details)
    assert status[G] == ("unsupported", "sub-interpreters need Python 3.14+, this is 3.13")
    if not has_python("3.14"):
        assert status[U][0] == "unavailable" and "3.14" in status[U][1]
    assert {c.id: c.environment.runner for c in ledger.cells}[C] == "local"
    assert next(c for c in ledger.cells if c.id == C).environment.python_version.startswith("3.13")


def test_every_outcome_lands_in_the_ledger(pipeline: Path) -> None:
    ledger = L.decode((pipeline / "compat.json").read_bytes())
    tests = {t.nodeid: t for t in ledger.tests}
    for nodeid, test in tests.items():
        for cell in RAN:
            want_status, want_reason = expected(nodeid, cell)
            got = test.results[cell]
            assert got.status == want_status, (nodeid, cell, got)
            assert want_reason in got.reason, (nodeid, cell, got.reason)
    strict = tests[OUT + "test_xpasses_strict_on_forkserver"].results[A]
    assert strict.strict is True and tests[OUT + "test_xpasses_non_strict"].results[A].strict is False
    hang = tests[H + "test_hangs_on_forkserver_capture_no"].results[F]
    assert "test_hangs_on_forkserver_capture_no" in hang.message  # the stack dump
    for nodeid, why in WHY.items():
        assert tests[nodeid].why.startswith(why), (nodeid, tests[nodeid].why)
    assert G not in tests[OUT + "test_passes"].results


AXIS_VALUES = {axis: set(values) for axis, values in MATRIX.axes.values().items()}


def covered(where: str, universe: list[str]) -> set[str]:
    """The cells of ``universe`` that a "where" text (``3.13 · fd``, ``every group``, ``2 cells: a, b``) names."""
    if where == "every cell":
        return set(universe)
    if m := re.fullmatch(r"\d+ cells: (.*)", where):
        return set(m.group(1).split(", "))
    found = set()
    for cell in universe:
        py, group, backend, cap = re.fullmatch(r"py([^-]+)-([^-]+)-([^-]+)-cap(.+)", cell).groups()
        values = {py, group, backend, cap}
        if all(part.startswith("every ") or values & set(part.split("/")) for part in where.split(" · ")):
            found.add(cell)
    return found


def test_every_problem_lands_in_the_markdown_with_where_it_happens(pipeline: Path) -> None:
    md = (pipeline / "COMPATIBILITY.md").read_text()
    ledger = L.decode((pipeline / "compat.json").read_bytes())
    universe = {t.nodeid: list(t.results) for t in ledger.tests}
    problems = md.split("## Failing, timing out, flaky, leaking\n", 1)[1].split("\n## ", 1)[0]
    listed: dict[tuple[str, str], tuple[str, str]] = {}
    for line in problems.splitlines():
        if m := re.match(r"- (\S+) `([^`]+)` \*\*([^*]+)\*\* in (.+?)(?: — (.*))?$", line):
            listed[(m.group(2), m.group(3))] = (m.group(4), m.group(5) or "")
            assert m.group(1) in {row.emoji for row in TESTS} | {row_of("xpassed", strict=True).emoji}
    verbs = {"failed": "fails", "error": "errors", "flaky": "is flaky", "timeout": "times out"}
    want: dict[tuple[str, str], set[str]] = {}
    for (nodeid, cell), (status, _) in EXPECTED.items():
        if status == "xpassed" and "strict_on" in nodeid:
            want.setdefault((nodeid, "passes despite a strict xfail"), set()).add(cell)
        elif status in verbs:
            want.setdefault((nodeid, verbs[status]), set()).add(cell)
    assert set(listed) == set(want)
    for key, cells in want.items():
        where, reason = listed[key]
        assert covered(where, universe[key[0]]) == cells, (key, where)
        fragment = next(r for (n, c), (_, r) in EXPECTED.items() if n == key[0] and c in cells)
        if key[1] != "is flaky":
            assert fragment in reason, (key, reason)
    assert "- 💧 `py3.13-greenback-trio-capno`: " in problems  # the leak, listed apart
    assert "- ⏱️ `py3.13-greenback-forkserver-capno` **timeout**" in problems

    expected = md.split("## Expected failures\n", 1)[1].split("\n## ", 1)[0]
    assert "`cases/cases_outcomes.py::test_xfails_with_reason` **xfails** in " in expected
    assert "[fixture-known-issue](../known-issues/fixture-known-issue.md)" in expected
    folded = md.split("## Skips and n/a\n", 1)[1].split("\n## ", 1)[0]
    assert "not relevant to this target" in folded
    assert "sub-interpreters need Python 3.14+" in folded
    assert "forkserver-only" in md and "needs greenback" in md


def test_every_outcome_lands_in_the_html(pipeline: Path) -> None:
    html = (pipeline / "index.html").read_text()
    island = re.search(r"<script id='data' type='application/json'>(.*?)</script>", html, re.S).group(1)
    data = json.loads(island.replace("<\\/", "</"))
    cell_ids = [c[2] for c in data["cells"]]
    for f, name, codes, why in data["tests"]:
        nodeid = f"{data['files'][f]}::{name}"
        for cell in RAN:
            status, _ = expected(nodeid, cell)
            code = codes if len(codes) == 1 else codes[cell_ids.index(cell)]
            want = row_of(status, strict="strict_on" in nodeid).code if status == "xpassed" else TEST[status].code
            assert code == want, (nodeid, cell, code)
        if nodeid in WHY:
            assert data["whys"][why].startswith(WHY[nodeid])
    assert "fixture cannot start under capture=fd" in island and "test_hangs_on_forkserver_capture_no" in island
    assert 'data-cell="py3.13-greenback-subint-capsys" data-status="unsupported"' in html


def test_the_job_summary_carries_the_grid(pipeline: Path) -> None:
    text = (pipeline.parent / "summary.md").read_text()
    # The grid's own rows, not the legend (which names every symbol too).
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert [row.split("|")[1].strip() for row in rows] == ["**3.13 base**", "**3.13 greenback**", "**3.14 greenback**"]
    grid = "\n".join(rows)
    assert "⏱️" in grid and "💧" in grid and "🚫" in grid
