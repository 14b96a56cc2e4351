"""The noxfile: sessions listed from matrix.toml, and the same cells as `compat plan`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat import cli
from compat.matrix import load
from compat.matrix import sessions as plan

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "matrix.toml"


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


def test_one_session_per_pair_parametrised_over_group_and_capture(listing):
    subint = [s for s in listing if s["name"] == "test-3.14-subint"]
    assert [s["session"] for s in subint] == [
        f"test-3.14-subint({g}-{c})" for g in ("base", "greenback", "cffi") for c in ("fd", "sys", "no")
    ]
    assert subint[0]["call_spec"] == {"cell": "py3.14-base-subint-capfd"}
    assert {"test", "py3.14", "subint", "base", "capfd"} <= set(subint[0]["tags"])
    names = {s["name"] for s in listing}
    pairs = {f"test-{p}-{b}" for p in ("3.13", "3.14") for b in ("trio", "forkserver", "subint")}
    assert names == pairs | {"matrix", "images", "doctor", "report", "tests", "workflow"}


def test_every_session_has_a_one_line_description(listing):
    for session in listing:
        assert session["description"], session["session"]
        assert "\n" not in session["description"], session["session"]


def test_nox_cell_sessions_are_exactly_the_planned_cells(listing):
    matrix = load(MATRIX)
    by_name = {plan.session_name(p, b): (p, b) for p, b in plan.pairs(matrix)}
    from_nox = {s["session"]: s["call_spec"]["cell"] for s in listing if s["name"] in by_name}
    assert from_nox == {c.session: c.id for c in plan.plan(matrix, matrix.cells()).cells}


def test_every_ci_job_session_is_a_nox_session(listing):
    sessions = {s["session"] for s in listing}
    matrix = load(MATRIX)
    jobs = plan.plan(matrix, matrix.cells()).jobs
    assert all(name in sessions for job in jobs for name in job.sessions.split())


def test_plan_json_equals_the_cells_nox_matrix_runs(noxfile):
    """`compat plan --json` (what CI fans out over) vs the `compat run` that `nox -s matrix` makes."""
    proc = subprocess.run(
        [sys.executable, "-m", "compat", "plan", "--json"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    planned = [c["id"] for c in json.loads(proc.stdout)["cells"]]

    before, extra = cli.split_pytest_args(noxfile.matrix_argv(["-k", "cancel"]))
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
