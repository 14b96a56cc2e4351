"""``compat repro CELL [NODE_ID ...] [-- PYTEST_ARGS]``: one cell, attached to your terminal.

The same image, mounts, limits, user, environment and pytest arguments as the
cell had in the matrix, but pytest (or, with ``--shell``, a shell) runs in the
foreground with your stdin and terminal, so ``--pdb`` and ``breakpoint()``
work. Node ids narrow the run the way triage's re-runs do.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .errors import ConfigError, PythonUnavailable
from .matrix import Cell, Matrix, match_ids
from .matrix.sessions import not_applicable
from .results.raw import read_meta
from .runners.base import prepare_out, remove_stage, stage_plugin
from .runners.cache import target_files
from .runners.docker import cell_container
from .runners.engine import Engine, cli_args
from .runners.images import builder_for
from .runners.wheel import TargetBuildError, target_wheels


def find_cell(matrix: Matrix, cell_id: str) -> Cell:
    cells = matrix.cells()
    found = match_ids([cell_id], cells)
    if len(found) != 1:
        ids = [c.id for c in cells]
        from .hints import did_you_mean

        what = "matches no cell" if not found else f"matches {len(found)} cells; name one"
        raise ConfigError(f"repro: '{cell_id}' {what} (see `compat plan`)" + did_you_mean(cell_id, ids))
    [cell] = found
    if (reason := not_applicable(matrix, [cell]).get(cell)) is not None:
        raise ConfigError(f"repro: {cell.id} is n/a here: {reason}")
    return cell


def command(
    matrix: Matrix, cell: Cell, image: str, *, stage: Path, out: Path, nodeids: Sequence[str],
    pytest_args: Sequence[str], shell: bool, tty: bool, wheels: Path | None = None,
) -> list[str]:  # fmt: skip
    """The ``docker run`` that reproduces ``cell``."""
    narrowed = matrix
    if nodeids:
        narrowed = msgspec.structs.replace(matrix, target=msgspec.structs.replace(matrix.target, tests=tuple(nodeids)))
    container = cell_container(
        narrowed, cell, image=image, stage=stage, out=out, run_id=f"repro-{cell.id}",
        mode="shell" if shell else "exec", pytest_args=pytest_args, wheels=wheels,
    )  # fmt: skip
    return cli_args(container, tty=tty)


def repro(
    matrix: Matrix,
    cell_id: str,
    nodeids: Sequence[str],
    pytest_args: Sequence[str],
    *,
    shell: bool,
    out: Path | None = None,
) -> int:
    """Run it; the cell's junit.xml and dumps are kept in ``out`` (a new temporary directory by default).

    The pytest arguments the cell's last run was given (``compat run ... -- ARGS``) come first, then
    ``pytest_args``: a failure is reproduced as it happened (under ``--runxfail``, say).
    """
    cell = find_cell(matrix, cell_id)
    recorded, _ = read_meta(matrix.raw_dir / cell.id)
    if recorded is not None and recorded.pytest_args:
        print(
            f"compat repro: replaying the run's pytest arguments: {shlex.join(recorded.pytest_args)}", file=sys.stderr
        )
        pytest_args = (*recorded.pytest_args, *pytest_args)
    if shutil.which("docker") is None:
        raise ConfigError("repro: the docker command-line client is needed to attach a terminal")
    engine = Engine.connect()
    try:
        try:
            image = builder_for(engine, matrix).ensure(cell.python, cell.group)
        except PythonUnavailable as exc:
            raise ConfigError(f"repro: {cell.id} is unavailable here: {exc}") from None
    finally:
        engine.close()
    files, digest = target_files(matrix)
    try:
        wheels = target_wheels(matrix, digest)
    except TargetBuildError as exc:
        raise ConfigError(f"repro: {exc}") from None
    stage = stage_plugin(files)
    out = prepare_out(out if out is not None else Path(tempfile.mkdtemp(prefix=f"compat-repro-{cell.id}-")))
    try:
        argv = command(
            matrix, cell, image, stage=stage, out=out, nodeids=nodeids, pytest_args=pytest_args,
            shell=shell, tty=sys.stdin.isatty() and sys.stdout.isatty(), wheels=wheels,
        )  # fmt: skip
        print(f"compat repro: {cell.id} in {image}: {shlex.join(argv[:3])} ...", file=sys.stderr, flush=True)
        print(f"compat repro: its junit.xml and dumps go to {out}", file=sys.stderr, flush=True)
        return subprocess.call(argv)
    finally:
        remove_stage(stage)
