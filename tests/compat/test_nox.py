"""The noxfile: compat.nox's sessions listed from compat.toml, and the same cells as `compat plan`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat import cli
from compat import nox as compat_nox
from compat.matrix import load
from compat.matrix import sessions as plan

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "compat.toml"


def nox(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def listing() -> list[dict]:
    # Every session: a bare `nox -l --json` lists only the default ones (the main job).
    proc = nox("-l", "--json", "-k", "not no_session_has_this_name")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_bare_listing_selects_the_main_job():
    proc = nox("-l", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [s["session"] for s in json.loads(proc.stdout)] == ["matrix", "report"]


def test_one_session_per_pair_and_one_per_cell(listing):
    subint = [s["session"] for s in listing if s["session"].startswith("test-3.14-subint")]
    assert subint == [
        "test-3.14-subint",
        *(f"test-3.14-subint({g}-{c})" for g in ("base", "greenback", "cffi") for c in ("fd", "sys", "no")),
    ]
    by_name = {s["session"]: s for s in listing}
    assert {"test", "py3.14", "subint"} <= set(by_name["test-3.14-subint"]["tags"])
    assert {"cell", "py3.14", "subint", "base", "capfd"} <= set(by_name["test-3.14-subint(base-fd)"]["tags"])
    pairs = {f"test-{p}-{b}" for p in ("3.13", "3.14") for b in ("trio", "forkserver", "subint")}
    others = {"matrix", "images", "doctor", "report", "tests", "workflow"}
    cells = {c.session for c in plan.plan(load(MATRIX), load(MATRIX).cells()).cells}
    assert set(by_name) == pairs | others | cells


def test_every_session_has_its_own_one_line_description(listing):
    for session in listing:
        assert session["description"], session["session"]
    # A description says which cell or pair it is: none is repeated (nox -l is read, not skimmed).
    descriptions = [s["description"] for s in listing]
    assert len(set(descriptions)) == len(descriptions)
    assert {s["description"] for s in listing if s["session"] == "test-3.14-subint(cffi-no)"} == {
        "py3.14-cffi-subint-capno: cffi group, --capture=no."
    }


def test_nox_cell_sessions_are_exactly_the_planned_cells(listing):
    matrix = load(MATRIX)
    planned = {c.session for c in plan.plan(matrix, matrix.cells()).cells}
    assert {s["session"] for s in listing if "cell" in s["tags"]} == planned


def test_every_ci_job_session_is_a_nox_session(listing):
    sessions = {s["session"] for s in listing}
    matrix = load(MATRIX)
    jobs = plan.plan(matrix, matrix.cells()).jobs
    assert all(name in sessions for job in jobs for name in job.sessions.split())


def test_plan_json_equals_the_cells_nox_matrix_runs():
    """`compat plan --json` (what CI fans out over) vs the `compat run` that `nox -s matrix` makes."""
    proc = subprocess.run(
        [sys.executable, "-m", "compat", "plan", "--json"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    planned = [c["id"] for c in json.loads(proc.stdout)["cells"]]

    before, extra = cli.split_pytest_args(compat_nox.matrix_argv(str(MATRIX), ["-k", "cancel"]))
    args = cli.build_parser().parse_args(before)
    assert args.command == "run"
    assert args.jobs == (os.cpu_count() or 1) + 1
    assert args.triage == -1  # the main job fills the why column, within matrix.toml's bound
    assert extra == ["-k", "cancel"]
    assert [c.id for c in cli.selected_cells(args, load(args.matrix))] == planned


def test_listing_needs_no_engine_and_a_bad_matrix_is_one_line(write_matrix):
    path = write_matrix('[axes]\npython = ["3.14"]\nbackend = ["subnit"]\n[target.backend-map]\nsubint = "subint"\n')
    proc = nox("-l", env={**os.environ, "COMPAT_MATRIX": str(path), "DOCKER_HOST": "unix:///nonexistent"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"compat: error: {path}: $.axes.backend[0]: 'subnit' is not in $.target.backend-map: subint; "
        "did you mean 'subint'?"
    )


def test_a_session_runs_compat_in_process_and_fails_with_it(tmp_path):
    ok = nox("-s", "workflow", "--", "--check")
    assert ok.returncode == 0, ok.stderr
    assert ".github/workflows/matrix.yml is up to date" in ok.stdout + ok.stderr
    failed = nox("-s", "report", "--", "--raw", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert failed.returncode == 1
    assert "compat: error: " in failed.stderr
    assert "compat report exited with 6" in failed.stderr
