"""The generated GitHub workflow, executed for real under act: plan -> images -> cells -> report.

Two repositories, as users have them: a copy of this checkout running the
fixture project's cells (spawn-compat installed from the checkout itself),
and a target's own repository whose workflow installs spawn-compat from a
wheel built here. What act cannot run (the Pages upload and deploy) stays
off: a dispatch with a `cells` input never publishes, and the publish
step's script is tested apart (test_ci_jobs.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from compat.ci import workflow
from tests.compat import actsupport, cellsupport
from tests.compat.actsupport import Act, new_repository
from tests.compat.places import ROOT, fixture

FIXTURE_CONFIG = "tests/compat/fixture_project/compat.toml"
ADOPTER = fixture("adopter")
OK, FAILING = "py3.13-base-plain-capsys-tcp", "py3.13-base-fork-capsys-tcp"


def compat_config(version: str, install: str) -> str:
    return f'\n[ci]\ninstall = "{install}"\nuv-version = "{version}"\n'


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """spawn-compat as a user's workflow installs it: a wheel (this one is on this machine only)."""
    uv = shutil.which("uv")
    assert uv is not None
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [uv, "build", "--wheel", "--package", "spawn-compat", "--out-dir", str(dist), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [found] = dist.glob("*.whl")
    return found


@pytest.fixture
def act(tmp_path: Path):
    cellsupport.require_engine()
    actsupport.require_act()
    runner = Act(tmp_path / "act")
    yield runner
    runner.clean()
    assert not runner.work.exists()


def leftovers(run_id: str) -> list[str]:
    engine = cellsupport.require_engine()
    return [c.name for c in engine.run_containers(run_id)]


def test_every_pin_of_the_workflow_has_its_action_on_disk():
    """The offline run loads actions from ../shared/gha-actions: a pin without a directory cannot run."""
    actsupport.require_act()
    on_disk = set(actsupport.pinned_directories())
    pins = {f"{a.repo.split('/')[0]}/{a.repo.split('/')[1]}@{a.sha}" for a in workflow.ACTIONS}
    # deploy-pages needs GitHub's OIDC token, which act cannot give: its job never runs offline.
    missing = sorted(pins - on_disk - {f"{workflow.DEPLOY_PAGES.repo}@{workflow.DEPLOY_PAGES.sha}"})
    assert missing == [], f"pinned in compat/ci/workflow.py without a directory in {actsupport.ACTIONS}: {missing}"


def test_the_fixture_projects_workflow_runs_end_to_end(act: Act, tmp_path: Path) -> None:
    repo = new_repository(None, tmp_path / "checkout")
    with (repo / FIXTURE_CONFIG).open("a") as config:
        config.write(compat_config(actsupport.uv_version(), "."))
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "commit", "-qam", "ci"],
        check=True,
    )
    written = subprocess.run(
        [str(Path(sys.executable).with_name("compat")), "--matrix", FIXTURE_CONFIG, "workflow"],
        cwd=repo, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    run_id = f"7{uuid.uuid4().int % 10**8}"
    done = act.run(repo, run_id=run_id, inputs={"cells": f"{OK} {FAILING}"})
    steps = done.steps()
    print("act, the fixture's workflow, seconds per job:", done.seconds())  # figures for the note (-s)
    assert steps[("plan", "compat plan --json")] == "Success", done.log[-4000:]
    assert steps[("image py3.13-base", "compat images (built only when its inputs changed)")] == "Success"
    legs = {job: outcome for (job, step), outcome in steps.items() if step == "compat run"}
    assert legs == {f"{OK}-1": "Success", f"{FAILING}-2": "Failure"}, legs  # the failing cell fails its job
    assert steps[("report", "compat report")] == "Success"
    assert done.jobs()["report"] == "succeeded"
    assert done.returncode != 0  # a failing cell is a failed run
    # The failing test is annotated where GitHub shows it.
    assert (
        f"::error file=tests/check_basic.py,title={FAILING}%3A tests/check_basic.py%3A%3Atest_wire::"
        "ConnectionError%3A the fork backend cannot share a tcp listener"
    ) in done.log
    # The merged table says what a local run of the same cells says.
    merged = {c["id"]: c["status"] for c in done.ledger()["cells"]}
    local_raw = tmp_path / "local-raw"
    subprocess.run(
        [str(Path(sys.executable).with_name("compat")), "--matrix", str(ROOT / FIXTURE_CONFIG), "run", OK, FAILING,
         "--out", str(local_raw), "--no-progress"],
        capture_output=True, check=False,
    )  # fmt: skip
    from compat.results.raw import read_cell

    assert (
        merged
        == {cell: read_cell(local_raw / cell).status for cell in (OK, FAILING)}
        == {
            OK: "ok",
            FAILING: "failing",
        }
    )
    assert leftovers(run_id) == []


def test_a_targets_own_workflow_installs_the_wheel_and_restores_its_image_from_the_cache(
    act: Act, tmp_path: Path, wheel: Path
) -> None:
    """The adoption issue's workflow, run twice: the image is built once, the second run restores it."""
    engine = cellsupport.require_engine()
    repo = new_repository(ADOPTER, tmp_path / "taskmesh")
    # Its own image: a target nobody else on this engine has.
    pyproject = (repo / "pyproject.toml").read_text()
    (repo / "pyproject.toml").write_text(f"# {uuid.uuid4()}\n" + pyproject)
    (repo / "compat.toml").write_text(
        '[axes]\npython = ["3.14"]\nbackend = ["inline", "pool"]\ncapture = ["sys"]\n'
        '[target]\ntest-groups = ["checks"]\ntests = ["tests"]\nbackend-option = ""\n'
        '[target.backend-map]\ninline = { pytest-args = ["-k", "inline"] }\npool = { pytest-args = ["-k", "pool"] }\n'
        + compat_config(actsupport.uv_version(), str(wheel))
    )
    compat = Path(sys.executable).with_name("compat")
    written = subprocess.run([str(compat), "workflow"], cwd=repo, capture_output=True, text=True, check=False)
    assert written.returncode == 0, written.stderr
    assert f"SPAWN_COMPAT: {wheel}" in (repo / workflow.WORKFLOW_PATH).read_text()
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    cells = "py3.14-base-inline-capsys py3.14-base-pool-capsys"
    image = "images-py3.14-base"

    first = act.run(repo, run_id=f"8{uuid.uuid4().int % 10**8}", inputs={"cells": cells})
    steps = first.steps()
    print("act, a target's workflow, first run, seconds per job:", first.seconds())
    build = ("image py3.14-base", "compat images (built only when its inputs changed)")
    assert steps[build] == "Success", first.log[-4000:]
    assert re.search(r"py3\.14-base  spawn-compat:py3\.14-base-\w+  \(built\)", first.log)
    assert steps[("image py3.14-base", "Save the rebuilt image")] == "Success"
    assert {j: o for (j, s), o in steps.items() if s == "compat run"} == {
        "py3.14-base-inline-capsys-1": "Success",
        "py3.14-base-pool-capsys-2": "Failure",
    }
    assert {c["id"]: c["status"] for c in first.ledger()["cells"]} == {
        "py3.14-base-inline-capsys": "ok",
        "py3.14-base-pool-capsys": "failing",
    }
    tag = re.search(r"py3\.14-base  (spawn-compat:py3\.14-base-\w+)  \(built\)", first.log).group(1)

    # A new runner has no image: the second run restores it from the Actions cache and builds nothing.
    engine.client.images.remove(tag, force=True)
    assert engine.image_id(tag) is None
    second = act.run(repo, run_id=f"9{uuid.uuid4().int % 10**8}", inputs={"cells": cells})
    steps = second.steps()
    print("act, a target's workflow, second run (image restored), seconds per job:", second.seconds())
    assert steps[("image py3.14-base", "Load it")] == "Success", second.log[-4000:]
    assert f"Cache restored from key: {image}-" in second.log
    assert re.search(rf"py3\.14-base  {re.escape(tag)}\n", second.log.replace("\r", ""))  # found, not built
    assert ("image py3.14-base", "Save the rebuilt image") not in steps
    assert {c["id"]: c["status"] for c in second.ledger()["cells"]} == {
        "py3.14-base-inline-capsys": "ok",
        "py3.14-base-pool-capsys": "failing",
    }
    engine.client.images.remove(tag, force=True)


@pytest.mark.parametrize("fault", ["plan", "stale-pin"])
def test_a_plan_failure_and_a_stale_pin_fail_the_right_jobs(act: Act, tmp_path: Path, wheel: Path, fault: str) -> None:
    repo = new_repository(ADOPTER, tmp_path / "taskmesh")
    (repo / "compat.toml").write_text(
        '[axes]\npython = ["3.14"]\nbackend = ["inline"]\ncapture = ["sys"]\n'
        '[target]\ntest-groups = ["checks"]\ntests = ["tests"]\nbackend-option = ""\n'
        '[target.backend-map]\ninline = { pytest-args = ["-k", "inline"] }\n'
        + compat_config(actsupport.uv_version(), str(wheel))
    )
    compat = Path(sys.executable).with_name("compat")
    assert subprocess.run([str(compat), "workflow"], cwd=repo, capture_output=True, check=False).returncode == 0
    path = repo / workflow.WORKFLOW_PATH
    cells = "no-such-cell-anywhere"
    if fault == "stale-pin":
        # A pin whose commit nothing on disk has (a hand edit, a bump without the action): nothing can load it.
        text = path.read_text().replace(workflow.SETUP_UV.sha, "0" * 40, 1)
        path.write_text(text)
        cells = "py3.14-base-inline-capsys"
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    done = act.run(repo, run_id=f"6{uuid.uuid4().int % 10**8}", inputs={"cells": cells})
    jobs = done.jobs()
    assert jobs.get("plan") == "failed", done.log[-3000:]
    # Nothing downstream of a failed plan runs: no image, no cell, no report.
    assert set(jobs) == {"plan"}, jobs
    if fault == "plan":
        assert "compat: error: 'no-such-cell-anywhere' matches no cell id of this matrix" in done.log
    else:
        assert "0" * 40 in done.log
    assert done.returncode != 0
