"""Which cells to run, and the names nox and GitHub Actions know them by.

The noxfile, ``compat plan`` and the generated workflow all name cells
through this module, so a developer's ``nox -s test-3.14-subint`` and the CI
job for the same cell are the same session.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import msgspec

from ..errors import ConfigError
from ..hints import did_you_mean
from .cells import AXES, Cell, CellAxes, axes_of, match_ids
from .config import Matrix

MATRIX_SESSION = "matrix"
# GitHub refuses a matrix of more than 256 jobs; beyond that cells share jobs.
MAX_JOBS = 256


def session_name(python: str, backend: str) -> str:
    return f"test-{python}-{backend}"


def param_id(cell: Cell) -> str:
    return "-".join([cell.group, cell.capture, *(v for _, v in cell.extra)])


def session_of(cell: Cell) -> str:
    """The exact nox session (as ``nox -l`` prints it) that runs one cell."""
    return f"{session_name(cell.python, cell.backend)}({param_id(cell)})"


def pairs(matrix: Matrix) -> list[tuple[str, str]]:
    """(python, backend) for every ``test-<python>-<backend>`` session."""
    return [(p, b) for p in matrix.axes.python for b in matrix.axes.backend]


def select(
    matrix: Matrix,
    *,
    axes: Mapping[str, Sequence[str]] | None = None,
    sessions: Sequence[str] = (),
    ids: Sequence[str] = (),
) -> list[Cell]:
    """Cells matching every given filter (an empty filter matches all), in matrix order.

    ``axes`` maps an axis name to the values wanted; ``ids`` are cell ids or
    shell globs of them (``py3.14-*-subint-*``).
    """
    known = matrix.axes.values()
    wanted = {axis: _check(axis, values, known) for axis, values in (axes or {}).items() if values}
    cells = matrix.cells()
    by_session = _cells_of_sessions(matrix, sessions)
    by_id = _cells_of_ids(cells, ids)
    return [
        cell
        for cell in cells
        if all(cell.value(axis) in values for axis, values in wanted.items())
        and (by_session is None or cell in by_session)
        and (by_id is None or cell in by_id)
    ]


def _check(axis: str, given: Sequence[str], known: dict[str, tuple[str, ...]]) -> set[str]:
    if axis not in known:
        raise ConfigError(f"--{axis}: not an axis of this matrix ({', '.join(known)})" + did_you_mean(axis, known))
    for value in given:
        if value not in known[axis]:
            raise ConfigError(
                f"--{axis}: '{value}' is not on the {axis} axis ({', '.join(known[axis])})"
                + did_you_mean(value, known[axis])
            )
    return set(given)


def _cells_of_ids(cells: list[Cell], ids: Sequence[str]) -> set[Cell] | None:
    if not ids:
        return None
    chosen: set[Cell] = set()
    for pattern in ids:
        found = match_ids([pattern], cells)
        if not found:
            raise ConfigError(
                f"'{pattern}' matches no cell id of this matrix (see `compat plan`)"
                + did_you_mean(pattern, [c.id for c in cells])
            )
        chosen.update(found)
    return chosen


def _cells_of_sessions(matrix: Matrix, sessions: Sequence[str]) -> set[Cell] | None:
    if not sessions:
        return None
    index: dict[str, list[Cell]] = {MATRIX_SESSION: matrix.cells()}
    for cell in matrix.cells():
        index.setdefault(session_name(cell.python, cell.backend), []).append(cell)
        index[session_of(cell)] = [cell]
    chosen: set[Cell] = set()
    ids = {c.id for c in matrix.cells()}
    for name in sessions:
        if name in ids:
            raise ConfigError(f"-s: '{name}' is a cell id: give it as is, without -s")
        if name not in index:
            raise ConfigError(
                f"-s: '{name}' is not a session of this matrix (see `nox -l`)" + did_you_mean(name, index)
            )
        chosen.update(index[name])
    return chosen


def not_applicable(matrix: Matrix, cells: Sequence[Cell]) -> dict[Cell, str]:
    """Why each n/a cell is n/a before anything is built: an exclude rule or the target's metadata.

    The target's project is read once for all the cells.
    """
    project = matrix.project()
    target = matrix.target
    test_groups = matrix.test_groups(project)
    requirements = matrix.install_mode(project) == "requirements"
    found = {}
    for cell in cells:
        name = None if requirements else target.group_name(cell.group)
        groups = [*test_groups, *([name] if name is not None else [])]
        reason = matrix.excluded(cell) or project.refusal(cell.python, groups)
        if reason is not None:
            found[cell] = reason
    return found


# -- the machine-readable plan (``compat plan --json``) ----------------------


class PlannedCell(CellAxes, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    session: str
    # Why the cell is n/a without running (excluded, refused by metadata); "" runs.
    na: str = ""


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One GitHub Actions job: its cells (all of one image) and the nox sessions that run them."""

    name: str
    cells: tuple[str, ...]
    # Space-separated: session names never contain spaces, and a string is
    # what a workflow step can take from the matrix without a template.
    sessions: str
    # The one (python, group) image the job's cells run in, as "py3.14-base".
    images: str


class ImageJob(msgspec.Struct, frozen=True, kw_only=True):
    """One image to build (or find) once per workflow run and hand to the cell jobs."""

    name: str
    python: str
    group: str


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    cells: tuple[PlannedCell, ...]
    jobs: tuple[Job, ...]
    images: tuple[ImageJob, ...] = ()


def plan(matrix: Matrix, cells: Sequence[Cell], *, max_jobs: int | None = None) -> Plan:
    na = not_applicable(matrix, cells)
    planned = tuple(
        PlannedCell(
            id=c.id, **axes_of(c), session=session_of(c), na=na.get(c, ""),
        )
        for c in cells
    )  # fmt: skip
    runnable = [c for c in planned if not c.na]
    pairs = sorted({(c.python, c.group) for c in runnable})
    return Plan(
        cells=planned,
        jobs=jobs(runnable, max_jobs=max_jobs or matrix.ci.max_jobs),
        images=tuple(ImageJob(name=image_name(p, g), python=p, group=g) for p, g in pairs),
    )


def image_name(python: str, group: str) -> str:
    return f"py{python}-{group}"


def cells_per_job(n_cells: int, *, max_jobs: int = MAX_JOBS) -> int:
    return max(1, math.ceil(n_cells / max_jobs))


def jobs(cells: Sequence[PlannedCell], *, max_jobs: int = MAX_JOBS) -> tuple[Job, ...]:
    """Cells grouped by image, then chunked: one cell per job unless that would exceed ``max_jobs``.

    A job holds cells of one image only, so it downloads one image; the chunk
    size is the smallest that keeps the job count within ``max_jobs`` (at
    least one job per image).
    """
    by_image: dict[str, list[PlannedCell]] = {}
    for c in cells:
        by_image.setdefault(image_name(c.python, c.group), []).append(c)
    size = cells_per_job(len(cells), max_jobs=max_jobs)
    while sum(math.ceil(len(cs) / size) for cs in by_image.values()) > max(max_jobs, len(by_image)):
        size += 1
    out = []
    for image, image_cells in by_image.items():
        for start in range(0, len(image_cells), size):
            chunk = image_cells[start : start + size]
            name = chunk[0].id if len(chunk) == 1 else f"{chunk[0].id}+{len(chunk) - 1}"
            out.append(
                Job(
                    name=name,
                    cells=tuple(c.id for c in chunk),
                    sessions=" ".join(c.session for c in chunk),
                    images=image,
                )
            )
    return tuple(out)


__all__ = ["AXES", "MATRIX_SESSION", "Plan", "not_applicable", "plan", "select", "session_of"]
