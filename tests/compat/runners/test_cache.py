"""The per-cell result cache, on a copy of the fixture project through real containers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from compat.matrix import load
from compat.matrix.sessions import select
from compat.results.raw import read_meta
from compat.runners.cache import tree_digest
from compat.runners.schedule import run_cells
from tests.compat import cellsupport
from tests.compat.places import fixture

FIXTURE = fixture("project")
# A clean cell, a cell refused by the target at run time, and a cell with a failing test.
CELLS = ("py3.14-base-plain-capsys-tcp", "py3.14-base-fork-capfd-tcp", "py3.14-base-fork-capsys-tcp")
CLEAN = CELLS[:2]


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(FIXTURE, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return project


def cached_from(raw: Path) -> dict[str, str | None]:
    found = {}
    for cell in CELLS:
        meta, problem = read_meta(raw / cell)
        assert meta is not None, problem
        found[cell] = meta.cached_from
    return found


def test_unchanged_clean_cells_are_reused_and_anything_else_runs_again(tmp_path: Path) -> None:
    cellsupport.require_engine()
    project = copy_project(tmp_path)
    matrix = load(project / "compat.toml")
    cells = select(matrix, ids=list(CELLS))
    raw = tmp_path / "raw"

    first = {m.cell: m for m in run_cells(matrix, cells, run_id="first", out_dir=raw, progress=False)}
    assert [first[c].outcome for c in CELLS] == ["completed", "unsupported", "completed"]
    assert all(m.cached_from is None for m in first.values())
    assert first[CELLS[2]].cache_key is None  # failing: never reused

    second = {m.cell: m for m in run_cells(matrix, cells, run_id="second", out_dir=raw, progress=False)}
    assert cached_from(raw) == {CELLS[0]: "first", CELLS[1]: "first", CELLS[2]: None}
    assert all(m.run_id == "second" for m in second.values())
    assert [second[c].outcome for c in CELLS] == [first[c].outcome for c in CELLS]

    # The third run reuses the first run's results again, not the second's copy of them.
    run_cells(matrix, cells, run_id="third", out_dir=raw, progress=False)
    assert cached_from(raw) == {CELLS[0]: "first", CELLS[1]: "first", CELLS[2]: None}

    # Editing one test file invalidates every cell that can see it; statuses stay right.
    test_file = project / "tests" / "check_basic.py"
    test_file.write_text(test_file.read_text() + "\n\ndef test_added_by_an_edit():\n    pass\n")
    edited = {m.cell: m for m in run_cells(matrix, cells, run_id="edited", out_dir=raw, progress=False)}
    assert cached_from(raw) == dict.fromkeys(CELLS)
    assert [edited[c].outcome for c in CELLS] == ["completed", "unsupported", "completed"]

    forced = run_cells(matrix, cells, run_id="forced", out_dir=raw, progress=False, use_cache=False)
    assert all(m.cached_from is None for m in forced)

    # Other pytest arguments are another key.
    narrowed = run_cells(matrix, cells, run_id="narrowed", out_dir=raw, progress=False, pytest_args=("-k", "wire"))
    assert all(m.cached_from is None for m in narrowed)


def git(cwd: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.parametrize("in_git", [True, False], ids=["git-work-tree", "plain-directory"])
def test_the_target_digest_follows_what_a_cell_can_see(tmp_path: Path, in_git: bool) -> None:
    root = tmp_path / "target"
    (root / "tests").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "tests" / "test_a.py").write_text("def test_a(): pass\n")
    (root / "docs" / "notes.md").write_text("notes\n")
    (root / "__pycache__").mkdir()
    if in_git:
        (root / ".gitignore").write_text("build/\n")
        git(root, "init", "-q")
        git(root, "add", ".")
        git(root, "commit", "-qm", "x")

    def digest() -> str:
        return tree_digest(root, ignore=["docs/**"], skip=[root / "raw"])

    before = digest()
    (root / "docs" / "notes.md").write_text("other notes\n")  # cache-ignore
    (root / "raw").mkdir()
    (root / "raw" / "meta.json").write_text("{}")  # the results directory itself
    (root / "__pycache__" / "x.pyc").write_bytes(b"\0")
    if in_git:
        (root / "build").mkdir()
        (root / "build" / "out.txt").write_text("ignored by .gitignore")
    assert digest() == before

    (root / "tests" / "test_a.py").write_text("def test_a(): assert 1\n")
    changed = digest()
    assert changed != before
    (root / "tests" / "test_new.py").write_text("def test_b(): pass\n")  # untracked, not ignored
    assert digest() != changed
