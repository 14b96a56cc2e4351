"""The ``docker`` runner: each cell in its own hardened container."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ..cell import protocol as P
from ..errors import EnvironmentFailed
from ..matrix import Cell, Matrix
from ..results.schema import CellMeta
from .base import (
    CellRun,
    prepare_out,
    record,
    remove_orphan_stages,
    remove_stage,
    stage_plugin,
    unprepared_meta,
)
from .cache import target_files
from .command import CTR_OUT, CTR_PLUGIN, CTR_SOURCE, CTR_TARGET, CTR_WHEELS, entry_spec
from .engine import CellContainer, ContainerSpec, Engine, run_scope
from .images import builder_for
from .supervise import supervise
from .wheel import TargetBuildError, target_wheels


class DockerRunner:
    kind: Literal["docker"] = "docker"

    def __init__(self, matrix: Matrix, run_id: str, pytest_args: Sequence[str], out_dir: Path | None = None) -> None:
        self.engine = Engine.connect()
        # A runner that was SIGKILLed left its containers and staged plugin behind.
        for gone in self.engine.remove_orphans():
            print(f"compat: removed a container of a runner that is gone: {gone}", file=sys.stderr)
        for stage in remove_orphan_stages():
            print(f"compat: removed the staged plugin of a runner that is gone: {stage}", file=sys.stderr)
        self.matrix = matrix
        self.run_id = run_id
        self.pytest_args = tuple(pytest_args)
        # (python, group) -> image tag, or why there is none (PythonUnavailable: no such Python).
        self.images: dict[tuple[str, str], str | EnvironmentFailed] = {}
        # The target's wheel directory (None: not installed), or why it could not be built.
        self.wheels: Path | TargetBuildError | None = None
        self.files, self.files_digest = target_files(matrix, out_dir)
        self.stage = stage_plugin(self.files)
        self._scope = run_scope(self.engine, run_id)
        self._scope.__enter__()

    def prepare(self, cells: Sequence[Cell]) -> None:
        """Build the target's wheel and each (python, group) image once; a failure fails only its cells."""
        pairs = sorted({(c.python, c.group) for c in cells})
        if not pairs:
            return
        try:
            self.wheels = target_wheels(self.matrix, self.files_digest)
        except TargetBuildError as exc:
            self.wheels = exc
        builder = builder_for(self.engine, self.matrix)
        for pair in pairs:
            try:
                self.images[pair] = builder.ensure(*pair)
            except EnvironmentFailed as exc:
                self.images[pair] = exc

    def environment(self, cell: Cell) -> str | None:
        """The image's tag, which hashes every input of the image; an image resolved at build time
        (no lock) also by its id, since a rebuild under the same tag may resolve other versions."""
        image = self.images.get((cell.python, cell.group))
        if not isinstance(image, str):
            return None
        if self.matrix.install_mode() == "lock":
            return image
        return f"{image}@{self.engine.image_id(image)}"

    def abort(self) -> None:
        self.engine.remove_run(self.run_id)

    def close(self) -> None:
        try:
            self._scope.__exit__(None, None, None)
        finally:
            remove_stage(self.stage)
            self.engine.close()

    def spec(self, cell: Cell, out: Path, image: str, reuse: Sequence[str] = ()) -> ContainerSpec:
        wheels = self.wheels if isinstance(self.wheels, Path) else None
        return cell_container(
            self.matrix, cell, image=image, stage=self.stage, out=out, run_id=self.run_id,
            mode="run", pytest_args=self.pytest_args, wheels=wheels, reuse=reuse,
        )  # fmt: skip

    def run_cell(self, cell: Cell, out: Path, stop: threading.Event, reuse: Sequence[str] = ()) -> CellMeta:
        image = self.images.get((cell.python, cell.group), EnvironmentFailed("its image was never prepared"))
        if isinstance(image, EnvironmentFailed):
            return unprepared_meta(cell, self.run_id, "docker", out, image)
        if isinstance(self.wheels, TargetBuildError):
            return unprepared_meta(cell, self.run_id, "docker", out, self.wheels)
        run = CellRun(
            cell=cell, run_id=self.run_id, runner="docker", out=prepare_out(out), pytest_args=self.pytest_args,
            reuse=tuple(reuse),
        )  # fmt: skip

        def body(run: CellRun) -> None:
            with CellContainer(self.engine, spec=self.spec(cell, out, image, reuse)) as ctr:
                run.image = ctr.image_id()
                try:
                    supervise(ContainerCell(ctr), run, self.matrix, stop)
                finally:
                    run.stdout = ctr.logs()

        return record(run, self.matrix, stop, body)


def cell_container(
    matrix: Matrix,
    cell: Cell,
    *,
    image: str,
    stage: Path,
    out: Path,
    run_id: str,
    mode: Literal["run", "exec", "shell"],
    pytest_args: Sequence[str] = (),
    wheels: Path | None = None,
    reuse: Sequence[str] = (),
) -> ContainerSpec:
    """The one description of a cell's container: the runner's, and `compat repro`'s."""
    limits, sandbox = matrix.limits, matrix.sandbox
    copy = sandbox.writable_target
    entry = entry_spec(
        matrix, cell, out=CTR_OUT, cwd=CTR_TARGET, plugin=CTR_PLUGIN, extra=pytest_args, fresh_dirs=True,
        source=CTR_SOURCE if copy else None, files=f"{CTR_PLUGIN}/{P.FILES_LIST}" if copy else None,
        wheels=CTR_WHEELS if wheels is not None else None, reuse=reuse,
    )  # fmt: skip
    mounts = {
        str(matrix.target_dir): (CTR_SOURCE if copy else CTR_TARGET, "ro"),
        str(stage): (CTR_PLUGIN, "ro"),
        str(out.resolve()): (CTR_OUT, "rw"),
    }
    if wheels is not None:
        mounts[str(wheels)] = (CTR_WHEELS, "ro")
    return ContainerSpec(
        image=image,
        command=["python", "-m", P.ENTRY_MODULE, mode, json.dumps(entry)],
        run_id=run_id,
        cell_id=cell.id,
        mounts=mounts,
        env={
            "PYTHONPATH": CTR_PLUGIN,
            P.ENV_SCOPE: "all",
            **({P.ENV_TARGET_DUMPS: json.dumps(matrix.target.dump_files)} if matrix.target.dump_files else {}),
        },
        working_dir=CTR_TARGET,
        pids=limits.pids,
        memory=limits.memory,
        cpus=limits.cpus,
        # The target's writable copy shares the cell's memory limit.
        tmpfs={CTR_TARGET: limits.memory} if copy else {},
        network=sandbox.network,
        cap_add=sandbox.cap_add,
    )


class ContainerCell:
    """A cell's container as the supervision sees it (``supervise.CellProcess``)."""

    def __init__(self, ctr: CellContainer) -> None:
        self.ctr = ctr

    def wait(self, timeout: float) -> int | None:
        return self.ctr.wait(timeout)

    def pids(self) -> list[int]:
        return self.ctr.host_pids()

    def entry(self, *args: str, bound: float) -> tuple[int, str]:
        # coreutils' timeout bounds it inside the cell: docker-py's exec has no bound of its own.
        argv = [a.replace("{out}", CTR_OUT) for a in args]
        return self.ctr.exec(["timeout", "-s", "KILL", f"{bound:g}", "python", "-m", P.ENTRY_MODULE, *argv])

    def kill(self) -> None:
        self.ctr.kill()

    def out_of_memory(self) -> bool:
        return self.ctr.oom_killed()

    def pids_usage(self) -> tuple[int, int] | None:
        return self.ctr.pids_usage()
