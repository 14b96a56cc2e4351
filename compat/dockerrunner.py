"""The ``docker`` runner: each cell in its own hardened container."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .config import Cell, Matrix
from .engine import CellContainer, ContainerSpec, Engine, run_scope
from .images import ensure_images
from .results import CellMeta
from .runner import (
    CTR_OUT,
    CTR_PLUGIN,
    CTR_TARGET,
    CellRun,
    entry_spec,
    finish_meta,
    prepare_out,
    stage_plugin,
    target_dir,
    wait_for_dumps,
)

WAIT_SLICE_S = 5.0


class DockerRunner:
    kind = "docker"

    def __init__(self, matrix: Matrix, run_id: str, pytest_args: Sequence[str]) -> None:
        self.engine = Engine.connect()
        self.matrix = matrix
        self.run_id = run_id
        self.pytest_args = tuple(pytest_args)
        self.images: dict[tuple[str, str], str] = {}
        self.stage = stage_plugin()
        self._scope = run_scope(self.engine, run_id)
        self._scope.__enter__()

    def prepare(self, cells: Sequence[Cell]) -> None:
        self.images = ensure_images(self.matrix, cells, engine=self.engine)

    def abort(self) -> None:
        self.engine.remove_run(self.run_id)

    def close(self) -> None:
        try:
            self._scope.__exit__(None, None, None)
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.engine.close()

    def spec(self, cell: Cell, out: Path) -> ContainerSpec:
        limits = self.matrix.limits
        command = ["python", "-m", "compat.cellentry", "run"]
        command.append(entry_spec(self.matrix, cell, out=CTR_OUT, cwd=CTR_TARGET, extra=self.pytest_args))
        return ContainerSpec(
            image=self.images[(cell.python, cell.group)],
            command=command,
            run_id=self.run_id,
            cell_id=cell.id,
            mounts={
                str(target_dir(self.matrix)): (CTR_TARGET, "ro"),
                str(self.stage): (CTR_PLUGIN, "ro"),
                str(out.resolve()): (CTR_OUT, "rw"),
            },
            env={"PYTHONPATH": f"{CTR_PLUGIN}:{CTR_TARGET}", "COMPAT_SCOPE": "all"},
            working_dir=CTR_TARGET,
            pids=limits.pids,
            memory=limits.memory,
            cpus=limits.cpus,
        )

    def run_cell(self, cell: Cell, out: Path, stop: threading.Event) -> CellMeta:
        run = CellRun(cell=cell, run_id=self.run_id, runner="docker", out=prepare_out(out))
        try:
            with CellContainer(self.engine, spec=self.spec(cell, out)) as ctr:
                run.image = ctr.image_id()
                self._supervise(ctr, run, stop)
                run.stdout = ctr.logs()
        except BaseException as exc:
            run.interrupted = run.interrupted or stop.is_set() or isinstance(exc, KeyboardInterrupt)
            if not run.interrupted:
                run.failure = f"{type(exc).__name__}: {exc}"
            finish_meta(run, self.matrix)
            raise
        return finish_meta(run, self.matrix)

    def _supervise(self, ctr: CellContainer, run: CellRun, stop: threading.Event) -> None:
        """Wait for the cell within its wall-clock bound; dump stacks and kill on expiry."""
        deadline = time.monotonic() + self.matrix.timeouts.per_cell
        while (remaining := deadline - time.monotonic()) > 0:
            code = ctr.wait(min(remaining, WAIT_SLICE_S))
            if stop.is_set():
                run.interrupted = True
                return
            if code is not None:
                run.exit_code = code
                if code == 137 and ctr.oom_killed():
                    run.failure = f"killed by the memory limit ({self.matrix.limits.memory})"
                return
        run.timed_out = True
        ask_for_stacks(ctr, run.out / "dumps")
        ctr.kill()
        run.exit_code = ctr.wait(10.0)


def ask_for_stacks(ctr: CellContainer, dumps: Path) -> list[int]:
    """SIGUSR1 every Python in the container, then wait (bounded) for their dump files."""
    code, output = ctr.exec(["python", "-m", "compat.cellentry", "dump"])
    try:
        pids = json.loads(output.strip().splitlines()[-1]) if code == 0 else []
    except (ValueError, IndexError):
        pids = []
    wait_for_dumps(dumps, expected=len(pids))
    return pids
