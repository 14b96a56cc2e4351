import shutil
import time
from pathlib import Path

import pytest

from compat.matrix import Cell, load
from compat.matrix import ImagesConfig as Images
from compat.paths import ROOT
from compat.runners.images import base_tag, ensure_images, image_hash, registry_host, registry_reachable
from compat.runners.install import install_for

# One worker owns the engine: images are built once, not raced.
pytestmark = pytest.mark.xdist_group("engine")

try:
    from tests.compat import cellsupport
except ImportError:
    import cellsupport


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    (root / "tests").mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, root / name)
    (tmp_path / "matrix.toml").write_text('[target]\npath = "target"\ntests = ["tests"]\n')
    return root


def tag_of(project: Path, python: str, group: str, *, base: str = "sha256:1", **kwargs: object) -> str:
    matrix = load(project.parent / "matrix.toml")
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
    (project.parent / "matrix.toml").write_text('[target]\npath = "target"\ntests = ["tests"]\ntest-groups = ["dev"]\n')
    variants.add(tag_of(project, "3.14", "base"))  # the target's test groups are what is installed
    assert reference not in variants
    assert len(variants) == 6


def test_the_targets_lock_and_groups_drive_the_install(project):
    (project.parent / "matrix.toml").write_text(
        '[axes]\ngroup = ["base", "greenback"]\n'
        '[target]\npath = "target"\ntests = ["tests"]\ntest-groups = ["test", "compat"]\n'
        '[target.group-map]\ngreenback = "cffi"\n'
    )
    matrix = load(project.parent / "matrix.toml")
    install = install_for(matrix, "greenback")
    assert install.files == (str(project / "pyproject.toml"), str(project / "uv.lock"))
    assert install.args == (
        "--frozen", "--no-install-project", "--no-default-groups",
        "--group", "test", "--group", "compat", "--group", "cffi",
    )  # fmt: skip
    (project / "uv.lock").unlink()  # without a lock, the pyproject is resolved at build time
    assert install_for(load(project.parent / "matrix.toml"), "base").args[:2] == (
        "--no-install-project",
        "--no-default-groups",
    )


def test_base_tag_follows_its_recipe():
    assert base_tag(Images()) == base_tag(Images())
    assert base_tag(Images()) != base_tag(Images(debian_suite="sid"))


def test_registry_host():
    assert registry_host("debian:trixie-slim") == "registry-1.docker.io"
    assert registry_host("ghcr.io/owner/image:1") == "ghcr.io"
    assert registry_host("library/debian") == "registry-1.docker.io"


def test_registry_probe_is_bounded():
    started = time.monotonic()
    assert registry_reachable("127.0.0.1:9/nothing/here", timeout=1.0) is False
    assert time.monotonic() - started < 2.0


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
