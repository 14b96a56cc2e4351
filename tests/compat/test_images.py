import shutil
import time
from pathlib import Path

import pytest

from compat.config import Cell, Images
from compat.images import ROOT, base_tag, ensure_images, image_hash, registry_host, registry_reachable

# One worker owns the engine: images are built once, not raced.
pytestmark = pytest.mark.xdist_group("engine")

try:
    from tests.compat import cellsupport
except ImportError:
    import cellsupport


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_same_inputs_same_tag(project):
    assert image_hash("3.14", "cffi", base_id="sha256:1", project=project) == image_hash(
        "3.14", "cffi", base_id="sha256:1", project=project
    )


def test_every_input_changes_the_tag(project, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    reference = image_hash("3.14", "base", base_id="sha256:1", project=project)
    variants = {
        image_hash("3.13", "base", base_id="sha256:1", project=project),
        image_hash("3.14", "cffi", base_id="sha256:1", project=project),
        image_hash("3.14", "base", base_id="sha256:2", project=project),
        image_hash("3.14", "base", base_id="sha256:1", project=project, ca_bundle=ca),
    }
    with (project / "uv.lock").open("a") as lock:
        lock.write("\n# changed\n")
    variants.add(image_hash("3.14", "base", base_id="sha256:1", project=project))
    assert reference not in variants
    assert len(variants) == 5


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
    again = ensure_images(cellsupport.fixture_matrix(), [Cell("3.13", "base", "trio", "fd")], engine=engine, log=log.append)
    elapsed = time.monotonic() - started
    assert again == {("3.13", "base"): tag}
    assert engine.image_id(tag) == before
    assert not [line for line in log if "building" in line]
    assert elapsed < 2.0, f"no-op image check took {elapsed:.2f} s"
