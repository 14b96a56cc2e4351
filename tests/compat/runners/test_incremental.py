"""Incremental re-runs through real containers, on a project that is not ours: after an edit, a
cell re-runs only the test modules the edit can affect, and takes the others' results over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compat.matrix import Cell, load
from compat.results.raw import read_cell
from compat.runners.schedule import run_cells
from tests.compat import cellsupport
from tests.compat.places import fixture

CELL = Cell("3.13", "base", "plain", "sys", (("wire", "tcp"),))
CONFIG = """
[axes]
python = ["3.13"]
group = ["base"]
backend = ["plain"]
capture = ["sys"]

[[axes.extra]]
name = "wire"
values = ["tcp"]
pytest-args = ["--wire={value}"]

[target]
path = "."
test-groups = ["testing"]
tests = ["tests"]
backend-option = "--runtime-backend"
reaper = ""
cache-ignore = ["docs/**"]
cache-inputs = ["tests/data/**"]

[target.env]
WIREKIT_STATE = "{home}/wirekit"

[timeouts]
per-test = 60
per-cell = 300
"""
MODULES = {
    "tests/helpers.py": "def greeting():\n    return 'hello'\n",
    "tests/check_alpha.py": "from helpers import greeting\n\n\ndef test_alpha():\n    assert greeting() == 'hello'\n",
    "tests/check_beta.py": "import helpers\n\n\ndef test_beta():\n    assert helpers.greeting()\n",
    "tests/check_gamma.py": (
        "import json\nfrom pathlib import Path\n\n\n"
        "def test_gamma():\n    assert json.loads((Path(__file__).parent / 'data' / 'gamma.json').read_text())\n"
    ),
    "tests/data/gamma.json": '{"ok": true}\n',
    "tests/sub/conftest.py": "import pytest\n\n\n@pytest.fixture\ndef answer():\n    return 42\n",
    "tests/sub/check_delta.py": "def test_delta(answer):\n    assert answer == 42\n",
    "docs/notes.md": "nothing a test reads\n",
    "LICENSE.txt": "read by nobody\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    cellsupport.require_engine()
    root = tmp_path / "wirekit"
    shutil.copytree(fixture("project"), root, ignore=shutil.ignore_patterns("__pycache__", "compat.toml"))
    (root / "compat.toml").write_text(CONFIG)
    for rel, text in MODULES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    # helpers.py is imported by name: the tests directory is on the path (rootdir-relative imports).
    (root / "tests" / "conftest.py").write_text(
        "import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parent))\n"
    )
    return root


def run(root: Path, *, ok: bool = True, **kwargs: object) -> tuple[set[str], dict[str, str], str]:
    """One run of the cell: the modules whose tests ran (from the cell's own events), every test's
    status (reused ones too), and the run id."""
    matrix = load(root / "compat.toml")
    [meta] = run_cells(matrix, [CELL], out_dir=root / "raw", progress=False, **kwargs)  # type: ignore[arg-type]
    cell_dir = root / "raw" / CELL.id
    events = [json.loads(line) for line in (cell_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    # Tests that ran (a module skipped at import has no test: its collection, which always runs, says so).
    ran = {e["nodeid"].split("::")[0] for e in events if e["event"] == "start" and "::" in e["nodeid"]}
    if meta.cached_from:
        ran = set()  # the cell cache kept the last run's directory, and ran nothing
    result = read_cell(cell_dir)
    assert (result.status == "ok") == ok, (result.status, result.reason)
    return ran, {n: t.status for n, t in result.tests.items()}, meta.run_id


def edit(root: Path, rel: str) -> None:
    path = root / rel
    path.write_text(path.read_text() + "\n# edited\n")


ALL = {"tests/check_alpha.py", "tests/check_beta.py", "tests/check_gamma.py", "tests/sub/check_delta.py",
       "tests/check_basic.py"}  # fmt: skip


def test_an_edit_reruns_only_the_modules_it_can_affect(project: Path) -> None:
    ran, statuses, run1 = run(project)
    assert ran == ALL, ran

    # Nothing changed: the whole cell's result is reused (the cell cache).
    ran, _, _ = run(project)
    assert ran == set()

    # One test module: only it.
    edit(project, "tests/check_alpha.py")
    ran, now, run3 = run(project)
    assert ran == {"tests/check_alpha.py"}, ran
    assert now == statuses  # every other module's results taken over, unchanged
    reused = read_cell(project / "raw" / CELL.id)
    assert reused.tests["tests/check_beta.py::test_beta"].reused_from == run1
    assert reused.tests["tests/check_alpha.py::test_alpha"].reused_from == ""
    assert reused.meta is not None and reused.meta.reused == len(statuses) - 1

    # A helper two modules import: those two, and only those.
    edit(project, "tests/helpers.py")
    ran, _, _ = run(project)
    assert ran == {"tests/check_alpha.py", "tests/check_beta.py"}, ran

    # A conftest: what is under it.
    edit(project, "tests/sub/conftest.py")
    ran, _, _ = run(project)
    assert ran == {"tests/sub/check_delta.py"}, ran

    # A data file (a cache input) its reader opened: the reader.
    (project / "tests" / "data" / "gamma.json").write_text('{"ok": "yes"}\n')
    ran, _, _ = run(project)
    assert ran == {"tests/check_gamma.py"}, ran

    # The package under test: every module importing it.
    edit(project, "wirekit/__init__.py")
    ran, _, _ = run(project)
    assert ran == {"tests/check_basic.py"}, ran

    # A deleted module: its results are dropped, the rest reused.
    (project / "tests" / "check_beta.py").unlink()
    ran, now, _ = run(project)
    assert ran == set() and "tests/check_beta.py::test_beta" not in now, (ran, sorted(now))
    assert set(now) == set(statuses) - {"tests/check_beta.py::test_beta"}

    # A file nobody's record names, edited: it may be read out of sight, so everything runs.
    edit(project, "LICENSE.txt")
    ran, _, _ = run(project)
    assert ran == ALL - {"tests/check_beta.py"}, ran

    # What cache-ignore names cannot change a result: nothing runs.
    edit(project, "docs/notes.md")
    ran, _, _ = run(project)
    assert ran == set()

    # --no-cache runs everything, whatever the record says.
    ran, _, _ = run(project, use_cache=False)
    assert ran == ALL - {"tests/check_beta.py"}
    assert run3 != run1


def test_what_was_not_clean_runs_again_unchanged(project: Path) -> None:
    (project / "tests" / "check_gamma.py").write_text("def test_gamma():\n    assert False\n")
    run(project, ok=False)
    ran, statuses, _ = run(project, ok=False)
    # Nothing changed, yet the failing module runs again (it may be flaky); every clean one is taken over.
    assert ran == {"tests/check_gamma.py"}, ran
    assert statuses["tests/check_gamma.py::test_gamma"] == "failed"
    # A collection error stops pytest's session: nothing of such a run is reused by the next.
    (project / "tests" / "check_broken.py").write_text("def test_x(:\n")
    run(project, ok=False)
    (project / "tests" / "check_broken.py").unlink()
    ran, _, _ = run(project, ok=False)
    assert ran == ALL, ran
