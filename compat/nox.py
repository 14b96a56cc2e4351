"""spawn-compat's nox sessions, for any project's ``noxfile.py``: one call adds them.

```python
# noxfile.py
import compat.nox

compat.nox.sessions()            # the config compat finds from this directory, or COMPAT_MATRIX
```

Then ``nox -l`` lists ``test-<python>-<backend>`` (that pair's cells, one
parametrisation per group, capture and the target's own axes), ``matrix``
(every cell, one more at once than there are cores, then the re-runs that
fill the report's why column), ``images``, ``doctor``, ``report`` and
``workflow``. Each runs compat in nox's own process (no virtualenv of its
own: compat drives containers, the cells hold the environments), and
arguments after ``--`` reach pytest (``nox -s test-3.14-subint -- -k cancel``).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import nox

from .errors import ConfigError
from .matrix import Cell, Matrix, load, new_run_id
from .matrix import sessions as planning

ENV_CONFIG = "COMPAT_MATRIX"
# Measured on 2 cores, 9 cells: -j2 237 s, -j3 196 s, -j4 190 s (README, "How many at once").
EXTRA_JOBS = 1


def sessions(
    config: str | Path | None = None, *, default: Sequence[str] = (planning.MATRIX_SESSION, "report")
) -> Matrix:
    """Register compat's sessions for ``config`` (default: $COMPAT_MATRIX, else the config compat
    finds from the noxfile's directory); ``default`` becomes what a bare ``nox`` runs."""
    path = (
        Path(config) if config is not None else (Path(os.environ[ENV_CONFIG]) if os.environ.get(ENV_CONFIG) else None)
    )
    matrix = _load(path)
    source = str(Path(matrix.source).resolve())
    nox.options.default_venv_backend = "none"
    if default:
        nox.options.sessions = list(default)
    # One run id for every session of this nox invocation, so its cells report together.
    os.environ.setdefault("COMPAT_RUN_ID", new_run_id())
    _define(matrix, source)
    return matrix


def compat_argv(source: str, command: str, *args: str, posargs: Sequence[str] = (), pytest: bool = False) -> list[str]:
    """Arguments for ``compat``; with ``pytest``, posargs go after ``--`` to pytest."""
    argv = ["--matrix", source, command, *args]
    if pytest and posargs:
        return [*argv, "--", *posargs]
    return [*argv, *posargs]


def matrix_argv(source: str, posargs: Sequence[str] = (), jobs: int | None = None) -> list[str]:
    # One cell more than cores: cells spend time waiting (timeouts, children, container start).
    jobs = jobs or (os.cpu_count() or 1) + EXTRA_JOBS
    return compat_argv(source, "run", "--jobs", str(jobs), "--triage", posargs=posargs, pytest=True)


def run_compat(session: nox.Session, argv: list[str]) -> None:
    """Run compat in this process; Ctrl-C stops nox, any other failure fails the session."""
    from .cli import INTERRUPTED, main

    # nox sets the root logger to DEBUG for its own records; in this process
    # docker-py's and urllib3's request logs would flow through it too.
    for name in ("docker", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    session.log("compat " + shlex.join(argv))
    code = main(argv)
    if code == INTERRUPTED:
        raise KeyboardInterrupt
    if code:
        session.error(f"compat {argv[2]} exited with {code}")


def _load(path: Path | None) -> Matrix:
    try:
        return load(path)
    except ConfigError as exc:
        # One line, as `compat` prints it, instead of a traceback from nox.
        print(f"compat: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _define(matrix: Matrix, source: str) -> None:
    for python, backend in planning.pairs(matrix):
        cells = [c for c in matrix.cells() if (c.python, c.backend) == (python, backend)]
        _define_pair(source, python, backend, cells)
    name = Path(source).name

    def matrix_session(session: nox.Session) -> None:
        run_compat(session, matrix_argv(source, session.posargs))

    def images(session: nox.Session) -> None:
        run_compat(session, compat_argv(source, "images", posargs=session.posargs))

    def doctor(session: nox.Session) -> None:
        run_compat(session, compat_argv(source, "doctor", posargs=session.posargs))

    def report(session: nox.Session) -> None:
        run_compat(session, compat_argv(source, "report", posargs=session.posargs))

    def workflow(session: nox.Session) -> None:
        run_compat(session, compat_argv(source, "workflow", posargs=session.posargs))

    described = (
        (matrix_session, planning.MATRIX_SESSION, f"Every cell of {name}, cores + 1 at once, then the why re-runs."),
        (images, "images", f"Build (or find) every image {name} needs; posargs filter (--python 3.14)."),
        (doctor, "doctor", f"Check the engine, base image, Pythons and CA bundle {name} needs."),
        (report, "report", f"Write the table of {name} from its raw results."),
        (workflow, "workflow", f"Regenerate the GitHub workflow from {name} (-- --check to only compare)."),
    )
    for func, session_name, doc in described:
        func.__doc__ = doc
        nox.session(name=session_name)(func)


def _define_pair(source: str, python: str, backend: str, cells: list[Cell]) -> None:
    """``test-<python>-<backend>`` runs the pair's cells together; ``...(<group>-<capture>)`` one cell.

    One session per cell, not a nox parametrisation: each gets its own
    description in ``nox -l``, and the pair's session runs its cells in one
    compat run (cores + 1 at once) instead of one after another.
    """
    ids = [c.id for c in cells]

    def pair(session: nox.Session) -> None:
        jobs = str((os.cpu_count() or 1) + EXTRA_JOBS)
        run_compat(session, compat_argv(source, "run", *ids, "--jobs", jobs, posargs=session.posargs, pytest=True))

    pair.__doc__ = f"Python {python}, {backend} backend: its {len(cells)} cells, one container each."
    nox.session(name=planning.session_name(python, backend), tags=["test", f"py{python}", backend])(pair)
    for cell in cells:
        _define_cell(source, cell)


def _define_cell(source: str, cell: Cell) -> None:
    def one(session: nox.Session) -> None:
        run_compat(session, compat_argv(source, "run", cell.id, posargs=session.posargs, pytest=True))

    extra = "".join(f", {name} {value}" for name, value in cell.extra)
    one.__doc__ = f"{cell.id}: {cell.group} group, --capture={cell.capture}{extra}."
    tags = ["cell", f"py{cell.python}", cell.backend, cell.group, f"cap{cell.capture}", *(v for _, v in cell.extra)]
    nox.session(name=planning.session_of(cell), tags=tags, default=False)(one)
