"""The real thing: this repository's suites in real cells, through `compat run`.

These cells are what the published table is made of; here they must come out
`ok` (passing, with their documented xfails), or n/a where matrix.toml
excludes the combination (3.13 x subint; the gate that would refuse it is
tested in tests/backends). The subint suite only ever runs here, inside a
Python 3.14 container: the host has no 3.14.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat.results.raw import read_cell
from tests.compat.cellsupport import require_engine

REPO = Path(__file__).resolve().parents[2]
CELLS = {
    # cell id: what must hold
    "py3.14-base-subint-capfd": "ok",
    "py3.13-base-subint-capfd": "excluded",
    "py3.13-cffi-forkserver-capfd": "ok",
    "py3.14-greenback-trio-capsys": "ok",
}

RUN_ID = f"default-target-{os.getpid()}"


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    require_engine()
    out = tmp_path_factory.mktemp("raw")
    selection = []
    for cell in CELLS:
        py, group, backend, cap = cell.split("-")
        selection.append(f"test-{py[2:]}-{backend}({group}-{cap[3:]})")
    argv = [
        sys.executable,
        "-m",
        "compat",
        "run",
        "--runner",
        "docker",
        "--no-progress",
        "--out",
        str(out),
        "--run-id",
        RUN_ID,
    ]
    for session in selection:
        argv += ["-s", session]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1500, check=False)
    # Exit 8 means some cell is not clean; the per-cell tests below say which and why.
    assert done.returncode in (0, 8), done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _describe(cell) -> str:
    bad = {n: t for n, t in cell.tests.items() if t.status not in ("passed", "xfailed", "skipped")}
    lines = [f"{cell.cell}: {cell.status} {cell.reason}"]
    lines += [f"  {t.status} {n}: {t.reason or t.message[-300:]}" for n, t in sorted(bad.items())]
    return "\n".join(lines)


@pytest.mark.parametrize("cell_id", list(CELLS))
def test_cell_outcome(raw, cell_id):
    cell = read_cell(raw / cell_id)
    expected = CELLS[cell_id]
    assert cell.status == expected, _describe(cell)
    if expected == "excluded":
        assert "excluded by matrix rule (python=3.13, backend=subint)" in cell.reason
        return
    statuses = [t.status for t in cell.tests.values()]
    assert statuses.count("passed") >= 20, _describe(cell)
    assert cell.meta is not None and cell.meta.python_version.startswith(cell.python)
    assert cell.meta.exit_code == 0


# The tests that need each group's package, and the one that checks the refusal without it.
GROUP_TESTS = {
    "py3.13-cffi-forkserver-capfd": (
        "test_hygiene.py",
        ("test_apply_child_kills_itself_when_the_parent_is_already_gone",
         "test_subreaper_adopts_orphans_and_reap_adopted_collects_only_ours"),
        None,
    ),
    "py3.14-greenback-trio-capsys": (
        "test_syncbridge.py",
        ("test_sync_code_in_an_actor_task_spawns_and_calls_through_greenback",
         "test_prepare_task_gives_the_task_a_portal"),
        "test_without_greenback_sync_code_in_a_task_gets_a_clear_error",
    ),
}  # fmt: skip


@pytest.mark.parametrize("cell_id", list(GROUP_TESTS))
def test_group_features_ran_rather_than_skipped(raw, cell_id):
    """In the group's cell its package is installed: what needs it passes, and the test of the
    refusal without it is the one that skips (without the group, the opposite holds)."""
    module, needs, refusal = GROUP_TESTS[cell_id]
    cell = read_cell(raw / cell_id)
    statuses = {n.split("::")[-1].split("[")[0]: t.status for n, t in cell.tests.items() if module in n}
    for test in needs:
        assert statuses.get(test) == "passed", (test, statuses, _describe(cell))
    if refusal is not None:
        assert statuses.get(refusal) == "skipped", (refusal, statuses)
    assert not [t.reason for n, t in cell.tests.items() if module in n and "not installed" in t.reason], statuses


def test_nothing_of_ours_is_left_running(raw):
    import docker

    client = docker.from_env()
    leftovers = client.containers.list(all=True, filters={"label": f"spawn-compat.run={RUN_ID}"}, ignore_removed=True)
    assert leftovers == [], [c.name for c in leftovers]
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("backends-")]
