"""The workflow's plan and report jobs, run here as GitHub would run them.

The generated workflow's own scripts are taken from the YAML and run with
bash in a workspace holding a copy of the fixture project (its own git
repository, as a target's checkout is); `compat` is this interpreter's, and
the raw results are real cells, laid out as actions/download-artifact lays
out the artifacts of every job and attempt, two attempts of one job
included. The whole workflow under act is tests/compat/test_act.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from compat.ci import workflow
from compat.matrix import load
from compat.results import ledger as L
from compat.runners.schedule import run_cells
from tests.compat import cellsupport
from tests.compat.places import fixture

FIXTURE = fixture("project")
# `compat ...` as the jobs write it (the tool `uv tool install` put on PATH), run with this interpreter's compat.
COMPAT_SHIM = 'compat() { "$COMPAT_PYTHON" -m compat "$@"; }\n'


def step(ws: Path, job: str, name: str) -> dict:
    data = YAML(typ="safe").load(workflow.render(load(ws / "compat.toml")))
    return next(s for s in data["jobs"][job]["steps"] if s.get("name") == name)


def run_step(script: str, cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    output = cwd / "github-output"
    output.write_text("")
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", COMPAT_SHIM + script],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COMPAT_PYTHON": sys.executable, "GITHUB_OUTPUT": str(output),
             "COMPAT_RUN_ID": "4242", **env},
    )  # fmt: skip
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return proc, outputs


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A checkout as the jobs see it: the fixture project, its own repository, its config at the top."""
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws, ignore=shutil.ignore_patterns("__pycache__", "reports"))
    with (ws / "compat.toml").open("a") as config:
        config.write('\n[ci]\ninstall = "spawn-compat==0.2.0"\nuv-version = "0.13.9"\n')
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    return ws


def test_the_plan_job_records_na_cells_and_plans_jobs_of_one_image(workspace: Path) -> None:
    script = step(workspace, "plan", "compat plan --json")["run"]
    proc, out = run_step(script, workspace, CELLS="")
    assert proc.returncode == 0, proc.stderr
    jobs, images = json.loads(out["jobs"]), json.loads(out["images"])
    # 32 cells: 8 excluded by rule and 6 refused by the target's metadata get no runner.
    assert sum(len(j["cells"]) for j in jobs) == 18
    assert len(list((workspace / "reports" / "raw").iterdir())) == 14
    assert {j["images"] for j in jobs} == {i["name"] for i in images}
    assert {i["name"] for i in images} == {"py3.13-base", "py3.13-old", "py3.14-base"}  # 3.14-old: n/a by metadata

    subset, out = run_step(script, workspace, CELLS="py3.14-base-plain-* py3.14-base-fork-capsys-tcp")
    assert subset.returncode == 0, subset.stderr
    assert sorted(c for j in json.loads(out["jobs"]) for c in j["cells"]) == [
        "py3.14-base-fork-capsys-tcp", "py3.14-base-plain-capfd-tcp", "py3.14-base-plain-capsys-tcp",
    ]  # fmt: skip


def test_the_report_job_merges_the_newest_attempt_of_each_cell(workspace: Path, tmp_path: Path) -> None:
    cellsupport.require_engine()
    proc, out = run_step(step(workspace, "plan", "compat plan --json")["run"], workspace, CELLS="")
    assert proc.returncode == 0, proc.stderr
    artifacts = workspace / "reports" / "artifacts"
    (artifacts / "raw-plan-1").parent.mkdir(parents=True)
    (workspace / "reports" / "raw").rename(artifacts / "raw-plan-1")
    matrix = load(workspace / "compat.toml")
    by_id = {c.id: c for c in matrix.cells()}
    jobs = json.loads(out["jobs"])
    for job in jobs:
        cells = [by_id[c] for c in job["cells"]]
        run_cells(matrix, cells, run_id="4242", out_dir=artifacts / f"raw-{job['name']}-1", jobs=2, progress=False)
    # The first attempt of one job was cancelled mid-cell (its meta never written); it was re-run.
    rerun = jobs[0]
    broken = rerun["cells"][0]
    (artifacts / f"raw-{rerun['name']}-1" / broken / "meta.json").unlink()
    cells = [by_id[c] for c in rerun["cells"]]
    second = run_cells(
        matrix, cells, run_id="4242", out_dir=artifacts / f"raw-{rerun['name']}-2", progress=False, use_cache=False
    )

    merge = step(workspace, "report", "Merge the newest attempt of each cell")["run"]
    proc, _ = run_step(merge, workspace)
    assert proc.returncode == 0, proc.stderr
    summary = tmp_path / "summary.md"
    proc, _ = run_step(
        step(workspace, "report", "compat report")["run"], workspace, GITHUB_STEP_SUMMARY=str(summary),
        PUBLISH="false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    site = workspace / "reports" / "site"
    ledger = L.decode((site / "compat.json").read_bytes())
    assert len(ledger.cells) == 32 and ledger.partial == ""
    assert ledger.run_id == "4242"
    cells_now = {c.id: c for c in ledger.cells}
    assert cells_now[broken].status != "error"  # attempt 2's copy, whole
    assert cells_now[broken].started == next(m.started for m in second if m.cell == broken)
    assert {c.status for c in ledger.cells} == {"ok", "failing", "unsupported", "excluded"}
    assert "# Compatibility: wirekit" in summary.read_text()
    assert json.loads((site / "badge.json").read_text())["message"] == "9/12 cells ok, 20 n/a"
    assert (site / "history.jsonl").read_text().count("\n") == 1


def test_a_publishing_run_writes_the_table_at_the_sites_root_even_with_cells_missing(workspace: Path) -> None:
    """The first publish of a run whose cell jobs did not all upload must not be an empty site."""
    proc, _ = run_step(step(workspace, "plan", "compat plan --json")["run"], workspace, CELLS="")
    assert proc.returncode == 0, proc.stderr
    artifacts = workspace / "reports" / "artifacts"
    artifacts.mkdir(parents=True)
    (workspace / "reports" / "raw").rename(artifacts / "raw-plan-1")  # only the n/a cells: every cell job lost
    proc, _ = run_step(step(workspace, "report", "Merge the newest attempt of each cell")["run"], workspace)
    assert proc.returncode == 0, proc.stderr
    report = step(workspace, "report", "compat report")["run"]
    proc, _ = run_step(report, workspace, GITHUB_STEP_SUMMARY=str(workspace / "summary.md"), PUBLISH="true")
    assert proc.returncode == 0, proc.stderr
    site = workspace / "reports" / "site"
    ledger = L.decode((site / "compat.json").read_bytes())
    assert ledger.partial.startswith("14 of 32 cells ran")
    assert (site / "COMPATIBILITY.md").is_file() and (site / "index.html").is_file()
    assert not (site / "partial").exists()
    assert (site / "history.jsonl").read_text().count("\n") == 1
