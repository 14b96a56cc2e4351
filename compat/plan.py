"""Which cells to run, and the names nox and GitHub Actions know them by.

The noxfile, ``compat plan`` and the generated workflow all name cells
through this module, so a developer's ``nox -s test-3.14-subint`` and the CI
job for the same cell are the same session.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

import msgspec

from .config import Cell, Matrix
from .errors import ConfigError

MATRIX_SESSION = "matrix"
# GitHub refuses a matrix of more than 256 jobs; beyond that cells share jobs.
MAX_JOBS = 256


def session_name(python: str, backend: str) -> str:
    return f"test-{python}-{backend}"


def param_id(group: str, capture: str) -> str:
    return f"{group}-{capture}"


def session_of(cell: Cell) -> str:
    """The exact nox session (as ``nox -l`` prints it) that runs one cell."""
    return f"{session_name(cell.python, cell.backend)}({param_id(cell.group, cell.capture)})"


def pairs(matrix: Matrix) -> list[tuple[str, str]]:
    """(python, backend) for every ``test-<python>-<backend>`` session."""
    return [(p, b) for p in matrix.axes.python for b in matrix.axes.backend]


def params(matrix: Matrix) -> list[tuple[str, str]]:
    """(group, capture) for every parametrisation of a pair's session."""
    return [(g, c) for g in matrix.axes.group for c in matrix.axes.capture]


def select(
    matrix: Matrix,
    *,
    python: Sequence[str] = (),
    group: Sequence[str] = (),
    backend: Sequence[str] = (),
    capture: Sequence[str] = (),
    sessions: Sequence[str] = (),
) -> list[Cell]:
    """Cells matching every given filter (an empty filter matches all), in matrix order."""
    axes = matrix.axes
    wanted = {
        "python": _check("python", python, axes.python),
        "group": _check("group", group, axes.group),
        "backend": _check("backend", backend, axes.backend),
        "capture": _check("capture", capture, axes.capture),
    }
    by_session = _cells_of_sessions(matrix, sessions)
    return [
        cell
        for cell in matrix.cells()
        if all(not values or getattr(cell, axis) in values for axis, values in wanted.items())
        and (by_session is None or cell in by_session)
    ]


def _check(axis: str, given: Sequence[str], known: Sequence[str]) -> set[str]:
    for value in given:
        if value not in known:
            hint = difflib.get_close_matches(value, list(known), n=1)
            text = f"--{axis}: '{value}' is not on the {axis} axis ({', '.join(known)})"
            raise ConfigError(f"{text}; did you mean '{hint[0]}'?" if hint else text)
    return set(given)


def _cells_of_sessions(matrix: Matrix, sessions: Sequence[str]) -> set[Cell] | None:
    if not sessions:
        return None
    index: dict[str, list[Cell]] = {MATRIX_SESSION: matrix.cells()}
    for cell in matrix.cells():
        index.setdefault(session_name(cell.python, cell.backend), []).append(cell)
        index[session_of(cell)] = [cell]
    chosen: set[Cell] = set()
    for name in sessions:
        if name not in index:
            hint = difflib.get_close_matches(name, list(index), n=1)
            text = f"-s: '{name}' is not a session of this matrix (see `nox -l`)"
            raise ConfigError(f"{text}; did you mean '{hint[0]}'?" if hint else text)
        chosen.update(index[name])
    return chosen


# -- the machine-readable plan (``compat plan --json``) ----------------------


class PlannedCell(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    python: str
    group: str
    backend: str
    capture: str
    session: str


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One GitHub Actions job: its cells and the nox sessions that run them."""

    name: str
    cells: tuple[str, ...]
    # Space-separated: session names never contain spaces, and a string is
    # what a workflow step can take from the matrix without a template.
    sessions: str
    # The (python, group) images the job needs: its image cache key.
    images: str


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    cells: tuple[PlannedCell, ...]
    jobs: tuple[Job, ...]


def plan(cells: Sequence[Cell], *, max_jobs: int = MAX_JOBS) -> Plan:
    planned = tuple(
        PlannedCell(
            id=c.id, python=c.python, group=c.group, backend=c.backend,
            capture=c.capture, session=session_of(c),
        )
        for c in cells
    )
    return Plan(cells=planned, jobs=jobs(planned, max_jobs=max_jobs))


def cells_per_job(n_cells: int, *, max_jobs: int = MAX_JOBS) -> int:
    return max(1, math.ceil(n_cells / max_jobs))


def jobs(cells: Sequence[PlannedCell], *, max_jobs: int = MAX_JOBS) -> tuple[Job, ...]:
    """Contiguous chunks, one cell per job unless that would exceed ``max_jobs``."""
    size = cells_per_job(len(cells), max_jobs=max_jobs)
    out = []
    for start in range(0, len(cells), size):
        chunk = cells[start : start + size]
        name = chunk[0].id if len(chunk) == 1 else f"{chunk[0].id}+{len(chunk) - 1}"
        out.append(
            Job(
                name=name,
                cells=tuple(c.id for c in chunk),
                sessions=" ".join(c.session for c in chunk),
                images="_".join(sorted({f"py{c.python}-{c.group}" for c in chunk})),
            )
        )
    return tuple(out)
