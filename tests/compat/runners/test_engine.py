import os

import pytest

from compat.errors import EngineError
from compat.runners.engine import (
    RUN_LABEL,
    RUNNER_LABEL,
    CellContainer,
    ContainerSpec,
    Engine,
    run_scope,
    runner_identity,
)
from tests.compat import cellsupport


def test_missing_engine_says_what_to_run(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(EngineError, match=r"run `(sudo )?compat provision`") as info:
        Engine.connect(timeout=1)
    # The fix is a command that works as given: root hosts often have no sudo.
    assert ("sudo " in str(info.value)) is (os.geteuid() != 0)


PROBE = (
    "id -u; id -g; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
    "(touch /probe 2>/dev/null && echo rw-root) || echo ro-root; "
    "touch /tmp/ok && echo tmp-ok; cat /sys/fs/cgroup/pids/pids.max; "
    "grep NoNewPrivs /proc/self/status"
)


def test_cell_container_is_hardened_labelled_and_removed():
    engine = cellsupport.require_engine()
    spec = ContainerSpec(
        image=cellsupport.image("3.13"), command=["sh", "-c", PROBE], run_id="test-engine", cell_id="probe", pids=64
    )
    with CellContainer(engine, spec=spec) as ctr:
        assert ctr.wait(30) == 0
        out = ctr.logs().split()
        labels = engine.client.containers.get(ctr.id).labels
        assert labels.items() >= {RUN_LABEL: "test-engine", "spawn-compat.cell": "probe"}.items()
        cid = ctr.id
    assert out[:2] == ["1000", "1000"]
    assert "docker-init" in out[2]
    assert "ro-root" in out and "tmp-ok" in out and "64" in out
    assert out[-1] == "1"  # NoNewPrivs
    assert all(c.id != cid for c in engine.client.containers.list(all=True, ignore_removed=True))


def test_run_scope_removes_its_own_containers_even_on_error_and_never_another_runners():
    """Two jobs of one CI run share a run id and an engine: each removes only what it made."""
    engine = cellsupport.require_engine()
    image = cellsupport.image("3.13")
    run = f"test-scope-{os.getpid()}"
    other = engine.client.containers.create(
        image, ["sleep", "60"], labels={RUN_LABEL: run, RUNNER_LABEL: "another-host:1"}
    )
    try:
        with pytest.raises(RuntimeError), run_scope(engine, run):
            engine.client.containers.create(
                image, ["sleep", "60"], labels={RUN_LABEL: run, RUNNER_LABEL: runner_identity()}
            ).start()
            assert len(engine.run_containers(run)) == 2
            raise RuntimeError("boom")
        assert [c.id for c in engine.run_containers(run)] == [other.id]
    finally:
        other.remove(force=True)


def test_doctor_without_engine_names_the_fix(monkeypatch):
    from rich.console import Console

    from compat.doctor import run_doctor
    from compat.matrix import Matrix

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    console = Console(record=True, width=200)
    assert run_doctor(Matrix(), console=console) == 1
    assert "compat provision" in console.export_text()


def test_doctor_passes_on_a_working_engine():
    from rich.console import Console

    from compat.doctor import run_doctor
    from compat.matrix import Matrix

    cellsupport.require_engine()
    cellsupport.image("3.13")
    console = Console(record=True, width=200)
    assert run_doctor(Matrix(), console=console) == 0, console.export_text()
    rows = {line.split("│")[1].strip(): line for line in console.export_text().splitlines() if line.count("│") > 3}
    assert {"engine", "images", "uv", "host Python", "chromium", "free disk"} <= set(rows)
    assert "uv " in rows["uv"] and "3.1" in rows["host Python"]


def test_a_missing_mount_source_is_an_error_and_creates_nothing(tmp_path):
    engine = cellsupport.require_engine()
    missing = tmp_path / "not-there"
    spec = ContainerSpec(
        image=cellsupport.image("3.13"), command=["true"], run_id="test-mount", cell_id="mount",
        mounts={str(missing): ("/target", "ro")},
    )  # fmt: skip
    with pytest.raises(EngineError, match="not-there"), CellContainer(engine, spec=spec):
        pass
    assert not missing.exists()
    assert engine.run_containers("test-mount") == []


def test_the_engines_error_is_kept_whole():
    engine = cellsupport.require_engine()
    image = "spawn-compat-missing/" + "a" * 60 + "/" + "b" * 60 + "/" + "c" * 60 + ":" + "t" * 100
    spec = ContainerSpec(image=image, command=["true"], run_id="test-error", cell_id="error")
    with pytest.raises(EngineError) as info, CellContainer(engine, spec=spec):
        pass
    message = str(info.value)
    assert len(message) > 300 and image in message, message
    assert engine.run_containers("test-error") == []


def test_a_container_removed_by_another_run_mid_listing_is_skipped(monkeypatch):
    # Another run removes its container between our listing and our inspection of it: the
    # interleaving is made real by removing it, on the engine, just before it is inspected.
    engine = cellsupport.require_engine()
    from compat.runners.engine import RUNNER_LABEL

    other = engine.client.containers.create(
        cellsupport.image("3.13"), ["true"], labels={RUN_LABEL: "test-vanishing", RUNNER_LABEL: "elsewhere:1"}
    )
    inspect = engine.client.api.inspect_container

    def removed_first(container, *args, **kwargs):
        if container == other.id:
            engine.client.api.remove_container(other.id, force=True)
        return inspect(container, *args, **kwargs)

    monkeypatch.setattr(engine.client.api, "inspect_container", removed_first)
    try:
        assert engine.remove_orphans() == []
    finally:
        monkeypatch.undo()
    other = engine.client.containers.create(cellsupport.image("3.13"), ["true"], labels={RUN_LABEL: "test-vanishing"})
    monkeypatch.setattr(engine.client.api, "inspect_container", removed_first)
    try:
        assert engine.run_containers("test-vanishing") == []
    finally:
        monkeypatch.undo()
