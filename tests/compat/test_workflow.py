"""The generated workflow: up to date, valid offline, least privilege, pinned."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from compat import cli
from compat.ci import workflow
from compat.errors import WorkflowStale
from compat.matrix import load
from compat.matrix import sessions as plan

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / "matrix.toml"
COMMITTED = ROOT / workflow.WORKFLOW_PATH
BIN = Path(sys.executable).parent


def test_committed_workflow_is_what_the_generator_writes(capsys):
    assert cli.main(["--matrix", str(MATRIX), "workflow", "--check"]) == 0
    assert capsys.readouterr().out == f"{COMMITTED} is up to date\n"


def test_check_fails_on_a_stale_or_missing_file_with_one_line(tmp_path, capsys):
    stale = tmp_path / "matrix.yml"
    stale.write_text(COMMITTED.read_text().replace("timeout-minutes: 30", "timeout-minutes: 31"))
    assert cli.main(["workflow", "--check", "--output", str(stale)]) == WorkflowStale.exit_code
    line = workflow.render(load(MATRIX)).splitlines().index("    timeout-minutes: 30") + 1
    assert capsys.readouterr().err == (
        f"compat: error: {stale} is stale (first difference at line {line}); "
        "run `compat workflow` and commit the result\n"
    )
    missing = tmp_path / "none.yml"
    assert cli.main(["workflow", "--check", "--output", str(missing)]) == WorkflowStale.exit_code
    assert capsys.readouterr().err == (f"compat: error: {missing} is missing; run `compat workflow` to write it\n")


def test_generator_is_deterministic_and_follows_the_matrix(write_matrix):
    matrix = load(MATRIX)
    assert workflow.render(matrix) == workflow.render(load(MATRIX))
    longer = load(write_matrix("[timeouts]\nper-cell = 3000\n"))
    # 54 cells in at most 20 jobs of one image each: 3 cells of 50 minutes, plus setup.
    assert f"timeout-minutes: {workflow.SETUP_MINUTES + 150}\n" in workflow.render(longer)
    nightly = load(write_matrix('[ci]\nschedule = ""\npush-branches = ["trunk"]\n'))
    data = YAML(typ="safe").load(workflow.render(nightly))
    assert "schedule" not in data["on"] and data["on"]["push"] == {"branches": ["trunk"]}


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflow_passes_the_vendored_schemas(schema):
    proc = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", schema, str(COMMITTED)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_of_medium_severity_or_above():
    proc = subprocess.run(
        [BIN / "zizmor", "--offline", "--format", "json", "--min-severity", "medium", str(COMMITTED.parent)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    findings = json.loads(proc.stdout)
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert proc.returncode == 0, proc.stderr


def as_yaml_data(node):
    """The workflow data as a YAML parser should read the emitted text back."""
    match node:
        case dict():
            return {k: as_yaml_data(v) for k, v in node.items()}
        case list():
            return [as_yaml_data(v) for v in node]
        case workflow.Action(repo, sha, _):
            return f"{repo}@{sha}"
        case workflow.Commented(value, _):
            return value
    return node


def test_emitted_yaml_reads_back_as_the_workflow_data():
    data = YAML(typ="safe").load(workflow.render(load(MATRIX)))
    assert data == as_yaml_data(workflow.workflow(load(MATRIX)))


@pytest.mark.parametrize(
    "value",
    [
        "3.13",
        "true",
        "on",
        "null",
        "- x",
        "a: b",
        "x #y",
        "#x",
        "'q'",
        '"q"',
        "{x}",
        "*a",
        "é",
        "",
        " lead",
        "tab\there",
        "two\nlines",
        "ends\n\n",
        "\nstarts",
        "back\\slash",
        "${{ x }}: y",
        "1e3",
    ],
)
def test_emitter_keeps_awkward_strings_strings(value):
    text = "".join(workflow._emit({"k": value, "l": [value]}, 0))
    assert YAML(typ="safe").load(text) == {"k": value, "l": [value]}


def test_actions_are_pinned_to_full_shas_with_their_version():
    uses = re.findall(r"^\s*(?:- )?uses: (.*)$", COMMITTED.read_text(), re.M)
    assert uses
    for line in uses:
        assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", line), line


def test_least_privilege():
    data = YAML(typ="safe").load(COMMITTED.read_text())
    assert data["permissions"] == {"contents": "read"}
    writers = {name for name, job in data["jobs"].items() if "permissions" in job}
    assert writers == {"pages"}  # nothing pushes to a branch; only the deploy job may write, to Pages
    assert data["jobs"]["pages"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert data["jobs"]["pages"]["steps"] == [
        {"id": "deploy", "uses": workflow.DEPLOY_PAGES.repo + "@" + workflow.DEPLOY_PAGES.sha}
    ]
    assert "git push" not in COMMITTED.read_text()
    for name, job in data["jobs"].items():
        if name == "pages":
            continue
        checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
        assert checkout["with"]["persist-credentials"] is False


def test_cells_run_the_developers_nox_sessions_and_upload_per_cell():
    data = YAML(typ="safe").load(COMMITTED.read_text())
    cell = data["jobs"]["cell"]
    assert cell["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.plan.outputs.jobs) }}"
    assert cell["timeout-minutes"] == workflow.SETUP_MINUTES + 30  # 3 cells a job, per-cell = 600 s
    steps = {s.get("name"): s for s in cell["steps"]}
    assert 'uv run nox -s "${sessions[@]}"' in steps["nox"]["run"]
    assert steps["Download its image"]["with"]["name"] == "image-${{ matrix.images }}"
    upload = steps["Upload raw results"]
    assert upload["if"] == "${{ !cancelled() }}"
    assert upload["with"]["name"] == "raw-${{ matrix.name }}-${{ github.run_attempt }}"  # a re-run adds, never collides
    report = {s.get("name"): s for s in data["jobs"]["report"]["steps"]}
    assert report["Download raw results"]["with"] == {"pattern": "raw-*", "path": workflow.ARTIFACTS}
    assert "uv run compat merge" in report["Merge the newest attempt of each cell"]["run"]
    assert "uv run compat report" in report["compat report"]["run"]
    assert '--summary "$GITHUB_STEP_SUMMARY"' in report["compat report"]["run"]
    assert data["env"]["COMPAT_RUN_ID"] == "${{ github.run_id }}"  # one run id across attempts
    assert "main" not in json.dumps(data["on"]) and data["on"]["schedule"] == [{"cron": "17 3 * * *"}]
    assert data["on"]["workflow_dispatch"]["inputs"]["cells"]["default"] == ""


def test_images_are_built_once_per_kind_and_cached_by_their_own_tags():
    data = YAML(typ="safe").load(COMMITTED.read_text())
    images = data["jobs"]["images"]
    assert images["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.plan.outputs.images) }}"
    steps = {s.get("name"): s for s in images["steps"]}
    restore = steps["Restore the newest image of this kind"]["with"]
    assert restore["restore-keys"] == "images-${{ matrix.name }}-"
    build = steps["compat images (built only when its inputs changed)"]["run"]
    assert "--pull" in build and "--github-output" in build
    save = steps["Save the rebuilt image"]
    assert save["if"] == "${{ steps.build.outputs.built == 'true' }}"
    assert save["with"]["key"] == "images-${{ matrix.name }}-${{ steps.build.outputs.key }}"
    assert data["jobs"]["cell"]["needs"] == ["plan", "images"]


def test_large_matrices_share_jobs_of_one_image_within_the_bound():
    matrix = load(MATRIX)
    cells = [c for c in plan.plan(matrix, matrix.cells()).cells if not c.na]
    assert len(cells) == 45 and len(plan.jobs(cells, max_jobs=256)) == 45  # one job each when it fits
    for bound in (4, 6, 20):
        jobs = plan.jobs(cells, max_jobs=bound)
        assert len(jobs) <= max(bound, 6)  # six images: at least one job each
        assert sorted(c for j in jobs for c in j.cells) == sorted(c.id for c in cells)
        assert len({j.name for j in jobs}) == len(jobs)
        for j in jobs:
            assert {f"py{c.python}-{c.group}" for c in cells if c.id in j.cells} == {j.images}
    jobs = plan.jobs(cells, max_jobs=20)
    assert [len(j.cells) for j in jobs] == [3] * 15
    assert jobs[0].name == f"{jobs[0].cells[0]}+2"
