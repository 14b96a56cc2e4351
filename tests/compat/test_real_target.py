"""A target that is not ours, through real containers: every cell and status asserted.

tests/compat/fixture_project is its own project (pyproject + uv.lock, a
dependency spawn-compat lacks, its test group named "testing", a group
limited by requires-python, module-level skips, a refusal with exit code 1,
its own "wire" axis); compat.toml beside it is the matrix.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compat.matrix import load
from compat.report import build_report
from compat.runners.schedule import run_cells
from tests.compat import cellsupport

FIXTURE = Path(__file__).with_name("fixture_project")
EXCLUDED = "excluded by matrix rule (backend=plain, wire=uds): the plain backend has no uds transport"
TOO_NEW = "its dependency group 'oldonly' requires Python <3.14 (pyproject.toml), not 3.14"
REFUSED = (
    "Exit: wirekit refuses: the fork backend needs --capture=sys "
    "fork children inherit pytest's capture descriptors and deadlock"
)


def expected_cell(python: str, group: str, backend: str, capture: str, wire: str) -> tuple[str, str]:
    if backend == "plain" and wire == "uds":
        return "excluded", EXCLUDED
    if python == "3.14" and group == "old":
        return "unsupported", TOO_NEW
    if backend == "fork" and capture == "fd":
        return "unsupported", REFUSED
    if backend == "fork" and wire == "tcp":
        return "failing", "1 failing: tests/check_basic.py::test_wire"
    return "ok", ""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cellsupport.require_engine()
    tmp = tmp_path_factory.mktemp("real-target")
    matrix = load(FIXTURE / "compat.toml")
    metas = run_cells(matrix, matrix.cells(), out_dir=tmp / "raw", jobs=2, progress=False)
    assert len(metas) == 32
    build_report(
        tmp / "raw", tmp / "out", baseline=Path("/dev/null"), summary=None, fail_on_regression=False, matrix=matrix
    )
    return tmp / "out"


@pytest.fixture(scope="module")
def ledger(report: Path) -> dict:
    return json.loads((report / "compat.json").read_bytes())


def test_the_table_shows_the_targets_axis_and_excluded_cells_as_na(report: Path) -> None:
    md = (report / "COMPATIBILITY.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| | "))
    assert header == "| | plain<br>fd | plain<br>sys | fork<br>fd | fork<br>sys |"  # backend x capture
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| **")]
    assert rows == [f"**{p} {g} {w}**" for p in ("3.13", "3.14") for g in ("base", "old") for w in ("tcp", "uds")]
    assert "target `wirekit`" in md and str(FIXTURE) not in md
    problems = md.split("## Failing, timing out, flaky, leaking\n", 1)[1].split("\n## ", 1)[0]
    assert "excluded" not in problems and "uds transport" not in problems  # n/a is not a problem
    folded = md.split("## Skips and n/a\n", 1)[1]
    assert "the plain backend has no uds transport — every python · every group · plain · every capture · uds" in folded


def test_every_cell_has_the_status_its_target_gives_it(ledger: dict) -> None:
    got = {c["id"]: (c["status"], c.get("reason", "")) for c in ledger["cells"]}
    want = {}
    for c in load(FIXTURE / "compat.toml").cells():
        want[c.id] = expected_cell(c.python, c.group, c.backend, c.capture, dict(c.extra)["wire"])
    assert got == want
    assert ledger["axes"]["wire"] == ["tcp", "uds"]
    assert ledger["target"]["name"] == "wirekit"


def test_the_targets_own_dependencies_groups_and_env_are_installed(ledger: dict) -> None:
    tests = {t["nodeid"]: t["results"] for t in ledger["tests"]}
    ran = [c["id"] for c in ledger["cells"] if c["status"] in ("ok", "failing")]
    assert len(ran) == 12  # 3 images x (plain-fd-tcp, plain-sys-tcp, fork-sys-tcp, fork-sys-uds)
    for cell in ran:
        # tomli-w is only in the target's lock; WIREKIT_STATE is [target.env] under a writable home.
        assert tests["tests/check_basic.py::test_describe"][cell]["status"] == "passed"
        assert tests["tests/check_basic.py::test_runtime_dir_is_writable"][cell]["status"] == "passed"
    packages = {c["id"]: c["environment"]["packages"] for c in ledger["cells"] if c["id"] in ran}
    assert all("tomli_w" in p or "tomli-w" in p for p in packages.values())
    assert {cell: "six" in p for cell, p in packages.items()} == {cell: "-old-" in cell for cell in ran}


def test_module_level_skips_are_skips_and_failures_carry_the_exception(ledger: dict) -> None:
    tests = {t["nodeid"]: t["results"] for t in ledger["tests"]}
    kernel = tests["tests/check_kernel.py"]
    assert {r["status"] for r in kernel.values()} == {"skipped"}
    assert {r["reason"] for r in kernel.values()} == {"needs a kernel module this machine has not loaded"}
    old = tests["tests/check_old.py"]
    assert {cell for cell, r in old.items() if r["status"] == "skipped"} == {
        c["id"] for c in ledger["cells"] if c["status"] in ("ok", "failing") and "-base-" in c["id"]
    }
    assert {r["reason"] for r in old.values()} == {"needs the oldonly group"}
    wire = tests["tests/check_basic.py::test_wire"]["py3.13-base-fork-capsys-tcp"]
    assert (wire["status"], wire["reason"]) == (
        "failed",
        "ConnectionError: the fork backend cannot share a tcp listener",
    )


def test_a_failed_image_build_fails_only_its_cells(tmp_path: Path) -> None:
    """The lock predates the "broken" group: its frozen sync fails, the base image does not."""
    cellsupport.require_engine()
    project = tmp_path / "proj"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_one.py").write_text("def test_one():\n    pass\n")
    (project / "tests" / "conftest.py").write_text(
        'def pytest_addoption(parser):\n    parser.addoption("--spawn-backend")\n'
    )
    shutil.copy(FIXTURE / "uv.lock", project / "uv.lock")
    pyproject = (FIXTURE / "pyproject.toml").read_text().split("[tool.pytest.ini_options]")[0]
    pyproject = pyproject.replace('requires-python = ">=3.13"', 'requires-python = ">=3.12"')
    (project / "pyproject.toml").write_text(
        pyproject.replace("[dependency-groups]", '[dependency-groups]\nbroken = ["six"]')
    )
    (tmp_path / "matrix.toml").write_text(
        '[axes]\npython = ["3.13", "3.12"]\ngroup = ["base", "broken"]\nbackend = ["trio"]\ncapture = ["sys"]\n'
        '[target]\npath = "proj"\ntests = ["tests"]\ntest-groups = ["testing"]\nreaper = ""\n'
    )
    matrix = load(tmp_path / "matrix.toml")
    metas = {m.cell: m for m in run_cells(matrix, matrix.cells(), out_dir=tmp_path / "raw", progress=False)}
    assert (metas["py3.13-base-trio-capsys"].outcome, metas["py3.13-base-trio-capsys"].exit_code) == ("completed", 0)
    broken = metas["py3.13-broken-trio-capsys"]
    assert broken.outcome == "error"
    assert "broken" in broken.reason and "compat-install.sh" in broken.reason  # the build's own words
    # A Python no image can provide is unavailable, with the reason, and the run went on.
    for group in ("base", "broken"):
        missing = metas[f"py3.12-{group}-trio-capsys"]
        assert (missing.outcome, missing.reason) == ("unavailable", "Debian has no python3.12 (trixie nor sid)")


def test_failed_and_failed_tests_run_only_what_was_not_ok(report: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from compat import cli
    from compat.results.raw import read_cell

    raw = report.parent / "raw"
    before = {p.name: json.loads((p / "meta.json").read_text())["run_id"] for p in raw.iterdir() if p.is_dir()}
    failing = {"py3.13-base-fork-capsys-tcp", "py3.13-old-fork-capsys-tcp", "py3.14-base-fork-capsys-tcp"}
    argv = ["--matrix", str(FIXTURE / "compat.toml"), "run", "--out", str(raw), "--no-progress", "--run-id"]
    # --failed-tests: the 3 failing cells, each running only its failing test.
    assert cli.main([*argv, "again-tests", "--failed-tests"]) == cli.CellsFailed.exit_code
    after = {p.name: json.loads((p / "meta.json").read_text())["run_id"] for p in raw.iterdir() if p.is_dir()}
    assert {c for c, r in after.items() if r == "again-tests"} == failing
    assert {c: r for c, r in after.items() if c not in failing} == {c: r for c, r in before.items() if c not in failing}
    for cell_id in failing:
        assert list(read_cell(raw / cell_id).tests) == ["tests/check_basic.py::test_wire"]
    # --failed: the same 3 cells, whole.
    assert cli.main([*argv, "again-cells", "--failed"]) == cli.CellsFailed.exit_code
    rerun = {c for c in failing if json.loads((raw / c / "meta.json").read_text())["run_id"] == "again-cells"}
    assert rerun == failing
    assert all(len(read_cell(raw / c).tests) == 5 for c in failing)
    err = capfd.readouterr().out
    assert err.count("] start ") == 6  # 3 containers each time, not 32
