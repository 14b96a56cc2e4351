"""`compat repro`: one cell's exact command in the same container, attached to the caller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.compat import cellsupport

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "compat" / "fixture_project" / "compat.toml"
CELL = "py3.13-base-fork-capsys-tcp"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "repro-out"


def repro(*args: str, stdin: str = "", out: Path | None = None) -> subprocess.CompletedProcess[str]:
    where = ["--out", str(out)] if out is not None else []
    return subprocess.run(
        [sys.executable, "-m", "compat", "--matrix", str(FIXTURE), "repro", *where, *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip


def test_repro_runs_the_cells_pytest_narrowed_to_a_node_id(out):
    cellsupport.require_engine()
    failing = repro(CELL, "tests/check_basic.py::test_wire", "--", "-q", out=out)
    assert failing.returncode == 1, failing.stderr
    assert "test_wire" in (out / "junit.xml").read_text()  # the cell's own arguments: junit into --out
    assert "ConnectionError: the fork backend cannot share a tcp listener" in failing.stdout
    assert "1 failed" in failing.stdout
    # The cell's own axis values reach pytest: on uds the same test passes.
    passing = repro("py3.13-base-fork-capsys-uds", "tests/check_basic.py::test_wire", "--", "-q", out=out)
    assert passing.returncode == 0 and "1 passed" in passing.stdout, passing.stdout + passing.stderr


def test_repro_shell_is_the_cells_user_and_environment(out):
    cellsupport.require_engine()
    script = (
        'id -u; echo "$HOME|$WIREKIT_STATE"; touch "$HOME/x" && echo writable; '
        "python -c 'import getpass, pwd, os; print(getpass.getuser(), pwd.getpwuid(os.getuid()).pw_dir)'; "
        "touch written-here && echo target-writable; exit 3\n"
    )
    done = repro(CELL, "--shell", stdin=script, out=out)
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("cell shell; pytest would run: python -m pytest tests --runtime-backend=fork")
    assert lines[1] == "1000"
    home, state = lines[2].split("|")
    assert home == "/tmp/home" and state == f"{home}/wirekit"
    assert lines[3] == "writable"
    # The cell's user is an ordinary user (a passwd entry, its home), and the target's copy is writable.
    assert lines[4] == "cell /tmp/home"
    assert lines[5] == "target-writable"
    assert not (FIXTURE.parent / "written-here").exists()  # the copy's, never the checkout's


def test_repro_of_an_unknown_or_na_cell_is_one_line():
    missing = repro("py3.13-base-fork-capsys-tpc")
    assert missing.returncode == 2
    assert missing.stderr == (
        "compat: error: repro: 'py3.13-base-fork-capsys-tpc' matches no cell (see `compat plan`); "
        "did you mean 'py3.13-base-fork-capsys-tcp'?\n"
    )
    excluded = repro("py3.13-base-plain-capsys-uds")
    assert excluded.returncode == 2
    assert "is n/a here: excluded by matrix rule" in excluded.stderr


def test_repro_replays_the_runs_own_pytest_arguments_then_yours(tmp_path):
    """A failure seen under `compat run ... -- ARGS` is reproduced under the same ARGS."""
    import shutil

    cellsupport.require_engine()
    project = tmp_path / "wirekit"
    shutil.copytree(FIXTURE.parent, project, ignore=shutil.ignore_patterns("__pycache__", "reports"))
    config = project / "compat.toml"
    run = subprocess.run(
        [sys.executable, "-m", "compat", "--matrix", str(config), "run", CELL, "--no-progress", "--", "-k", "wire"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 8, run.stderr  # test_wire fails in this cell
    again = subprocess.run(
        [sys.executable, "-m", "compat", "--matrix", str(config), "repro", CELL, "--out", str(tmp_path / "o"),
         "--", "-q"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert "replaying the run's pytest arguments: -k wire" in again.stderr
    assert again.returncode == 1 and "1 failed" in again.stdout and "passed" not in again.stdout, again.stdout
