import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from compat.matrix import Cell, load
from compat.matrix import ImagesConfig as Images
from compat.runners.images import base_tag, ensure_images, image_hash, registry_host, registry_reachable
from compat.runners.install import SCRIPT, install_for
from tests.compat import cellsupport
from tests.compat.places import fixture

FIXTURE = fixture("project")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the fixture project (its own pyproject and lock), with a config beside it."""
    root = tmp_path / "target"
    (root / "tests").mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(FIXTURE / name, root / name)
    (tmp_path / "compat.toml").write_text('[target]\npath = "target"\ntests = ["tests"]\n')
    return root


def tag_of(project: Path, python: str, group: str, *, base: str = "sha256:1", **kwargs: object) -> str:
    matrix = load(project.parent / "compat.toml")
    return image_hash(python, group, base_id=base, install=install_for(matrix, group), **kwargs)  # type: ignore[arg-type]


def test_same_inputs_same_tag(project):
    assert tag_of(project, "3.14", "cffi") == tag_of(project, "3.14", "cffi")


def test_every_input_changes_the_tag(project, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    reference = tag_of(project, "3.14", "base")
    variants = {
        tag_of(project, "3.13", "base"),
        tag_of(project, "3.14", "cffi"),
        tag_of(project, "3.14", "base", base="sha256:2"),
        tag_of(project, "3.14", "base", ca_bundle=ca),
    }
    with (project / "uv.lock").open("a") as lock:
        lock.write("\n# changed\n")
    variants.add(tag_of(project, "3.14", "base"))
    (project.parent / "compat.toml").write_text(
        '[target]\npath = "target"\ntests = ["tests"]\ntest-groups = ["testing", "oldonly"]\n'
    )
    variants.add(tag_of(project, "3.14", "base"))  # the target's test groups are what is installed
    (project.parent / "compat.toml").write_text(
        '[target]\npath = "target"\ntests = ["tests"]\n[target.build-env]\nSETUPTOOLS_SCM_PRETEND_VERSION = "1.0"\n'
    )
    variants.add(tag_of(project, "3.14", "base"))  # so is the environment it is built in
    assert reference not in variants
    assert len(variants) == 7


def sync_line(script: str) -> str:
    return next(line for line in script.splitlines() if " uv sync " in line)


def test_the_targets_lock_and_groups_drive_the_install(project):
    (project.parent / "compat.toml").write_text(
        '[axes]\ngroup = ["base", "old"]\n'
        '[target]\npath = "target"\ntests = ["tests"]\ntest-groups = ["testing"]\n'
        '[target.group-map]\nold = "oldonly"\n'
    )
    matrix = load(project.parent / "compat.toml")
    install = install_for(matrix, "old")
    assert install.files == (("pyproject.toml", str(project / "pyproject.toml")), ("uv.lock", str(project / "uv.lock")))
    assert sync_line(install.script) == (
        'UV_PROJECT_ENVIRONMENT="$venv" uv sync --frozen --no-install-project --no-default-groups '
        '--group testing --group oldonly --python "$python"'
    )
    (project / "uv.lock").unlink()  # without a lock, the pyproject is resolved at build time
    unlocked = install_for(load(project.parent / "compat.toml"), "base")
    assert " uv sync --no-install-project --no-default-groups --group testing " in sync_line(unlocked.script)
    assert unlocked.names == ("pyproject.toml",)


def test_extras_requirement_files_and_workspace_members_go_into_the_install(project):
    (project / "requirements-test.txt").write_text("-r requirements/base.txt\npytest\n")
    (project / "requirements").mkdir()
    (project / "requirements" / "base.txt").write_text("tomli-w\n")
    text = (project / "pyproject.toml").read_text()
    text = text.replace("[dependency-groups]", '[project.optional-dependencies]\nfast = ["six"]\n\n[dependency-groups]')
    (project / "pyproject.toml").write_text(text)
    (project.parent / "compat.toml").write_text(
        '[target]\npath = "target"\ntests = ["tests"]\ninstall = "pyproject"\nextras = ["fast"]\n'
        'requirements = ["requirements-test.txt"]\n'
    )
    install = install_for(load(project.parent / "compat.toml"), "base")
    assert install.names == ("pyproject.toml", "requirements-test.txt", "requirements/base.txt")
    assert "--group testing --extra fast" in sync_line(install.script)
    assert 'uv pip install --python "$venv/bin/python" -r requirements-test.txt' in install.script.splitlines()


def test_a_bare_test_tree_gets_pytest_and_a_requirements_target_only_its_files(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "compat.toml").write_text('[target]\ntests = ["tests"]\n')
    install = install_for(load(tmp_path / "compat.toml"), "base")
    assert install.names == ()
    lines = install.script.splitlines()
    assert 'uv venv --quiet "$venv" --python "$python"' in lines
    assert 'uv pip install --python "$venv/bin/python" pytest' in lines
    (tmp_path / "reqs.txt").write_text("pytest>=8\n")
    (tmp_path / "compat.toml").write_text('[target]\ntests = ["tests"]\nrequirements = ["reqs.txt"]\n')
    install = install_for(load(tmp_path / "compat.toml"), "base")
    assert install.names == ("reqs.txt",) and " pytest\n" not in install.script
    assert SCRIPT == "compat-install.sh"


def test_base_tag_follows_its_recipe():
    assert base_tag(Images()) == base_tag(Images())
    assert base_tag(Images()) != base_tag(Images(debian_suite="sid"))


def test_registry_host():
    assert registry_host("debian:trixie-slim") == "registry-1.docker.io"
    assert registry_host("ghcr.io/owner/image:1") == "ghcr.io"
    assert registry_host("library/debian") == "registry-1.docker.io"


def test_registry_probe_is_bounded():
    """A registry that accepts the connection and then says nothing (a black-holed proxy): only the
    probe's own timeout ends the wait. Its thread is given ten times that; without one, it never ends."""
    import socket
    import threading

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever reads or writes
        port = silent.getsockname()[1]
        answer: list[bool] = []
        probe = threading.Thread(
            target=lambda: answer.append(registry_reachable(f"127.0.0.1:{port}/nothing/here", timeout=0.5)),
            daemon=True,
        )
        probe.start()
        probe.join(timeout=5.0)
        assert not probe.is_alive(), "the registry probe waited past its bound"
    assert answer == [False]


def test_saved_images_load_back_with_their_tags(tmp_path):
    """`compat images --save TAR` (the images job) writes what `docker load` reads back, every tag kept."""
    from compat import cli

    cellsupport.require_engine()
    cellsupport.image("3.13")
    matrix_file = tmp_path / "compat.toml"
    (tmp_path / "tests").mkdir()
    (tmp_path / "requirements.txt").write_text("pytest\n")
    source = cellsupport.FIXTURE
    matrix_file.write_text(
        f'[axes]\npython = ["3.13"]\nbackend = ["trio"]\n[target]\npath = "{source}"\ntests = ["tests"]\n'
        'requirements = ["requirements.txt"]\n'
    )
    tar = tmp_path / "out" / "image.tar"
    output = tmp_path / "github-output"
    assert cli.main(["--matrix", str(matrix_file), "images", "--save", str(tar), "--github-output", str(output)]) == 0
    loaded = subprocess.run(["docker", "load", "-i", str(tar)], capture_output=True, text=True, check=False)
    assert loaded.returncode == 0, loaded.stderr
    tags = set(re.findall(r"^Loaded image: (\S+)$", loaded.stdout, re.M))
    assert tags == {cellsupport.image("3.13"), base_tag(Images())}, loaded.stdout
    assert dict(line.split("=", 1) for line in output.read_text().splitlines()) == {
        "key": output.read_text().split("key=")[1].split("\n")[0],
        "built": "false",
    }


def test_unchanged_image_is_not_rebuilt():
    engine = cellsupport.require_engine()
    tag = cellsupport.image("3.13")
    before = engine.image_id(tag)
    log: list[str] = []
    started = time.monotonic()
    again = ensure_images(
        cellsupport.fixture_matrix(), [Cell("3.13", "base", "trio", "fd")], engine=engine, log=log.append
    )
    elapsed = time.monotonic() - started
    assert again.tags == {("3.13", "base"): tag} and again.built == set()
    assert engine.image_id(tag) == before
    assert not [line for line in log if "building" in line]
    assert elapsed < 2.0, f"no-op image check took {elapsed:.2f} s"
