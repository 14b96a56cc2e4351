"""compat's sessions, generated from matrix.toml: `uv run nox -s NAME [-- ARGS]`.

test-<python>-<backend>: that pair's cells, one parametrisation per (group,
capture); matrix: every cell in parallel. ARGS reach pytest in both.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
MATRIX = Path(os.environ.get("COMPAT_MATRIX", ROOT / "matrix.toml"))
# compat is imported from this checkout even where the project is not installed.
sys.path.insert(0, str(ROOT))

from compat.errors import ConfigError  # noqa: E402
from compat.matrix import Cell, Matrix, load, new_run_id  # noqa: E402
from compat.matrix import sessions as planning  # noqa: E402

nox.options.default_venv_backend = "none"
# Bare `nox` is the README's main job, not every one of the matrix's sessions.
nox.options.sessions = [planning.MATRIX_SESSION, "report"]
# One run id for every session of this nox invocation, so its cells report together.
os.environ.setdefault("COMPAT_RUN_ID", new_run_id())


def compat_argv(command: str, *args: str, posargs: Sequence[str] = (), pytest: bool = False) -> list[str]:
    """Arguments for ``compat``; with ``pytest``, posargs go after ``--`` to pytest."""
    argv = ["--matrix", str(MATRIX), command, *args]
    if pytest and posargs:
        return [*argv, "--", *posargs]
    return [*argv, *posargs]


def cell_argv(cell: Cell, posargs: Sequence[str] = ()) -> list[str]:
    return compat_argv("run", cell.id, posargs=posargs, pytest=True)


def matrix_argv(posargs: Sequence[str] = (), jobs: int | None = None) -> list[str]:
    # One cell more than cores: cells spend time waiting (timeouts, children, container start).
    # Measured on 2 cores, 9 cells: -j2 237 s, -j3 196 s, -j4 190 s (README, "How many at once").
    jobs = jobs or (os.cpu_count() or 1) + 1
    return compat_argv("run", "--jobs", str(jobs), "--triage", posargs=posargs, pytest=True)


def compat(session: nox.Session, argv: list[str]) -> None:
    """Run compat in this process; Ctrl-C stops nox, any other failure fails the session."""
    from compat.cli import INTERRUPTED, main

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


def _load_matrix() -> Matrix:
    try:
        return load(MATRIX)
    except ConfigError as exc:
        # One line, as `compat` prints it, instead of a traceback from nox.
        print(f"compat: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _define_pair_session(python: str, backend: str, cells: list[Cell]) -> None:
    by_id = {cell.id: cell for cell in cells}

    def test(session: nox.Session, cell: str) -> None:
        compat(session, cell_argv(by_id[cell], session.posargs))

    # nox takes a session's description from its docstring.
    test.__doc__ = f"Python {python}, {backend} backend: one container per cell (group, capture, ...)."
    parametrized = nox.parametrize(
        "cell",
        [
            nox.param(c.id, id=planning.param_id(c), tags=[c.group, f"cap{c.capture}", *(v for _, v in c.extra)])
            for c in cells
        ],
    )(test)
    nox.session(
        parametrized,
        name=planning.session_name(python, backend),
        tags=["test", f"py{python}", backend],
    )


MATRIX_CONFIG = _load_matrix()
for _python, _backend in planning.pairs(MATRIX_CONFIG):
    _define_pair_session(
        _python, _backend, [c for c in MATRIX_CONFIG.cells() if (c.python, c.backend) == (_python, _backend)]
    )


@nox.session(name=planning.MATRIX_SESSION)
def matrix(session: nox.Session) -> None:
    """Every cell, one more at once than there are cores, with live progress."""
    compat(session, matrix_argv(session.posargs))


@nox.session
def images(session: nox.Session) -> None:
    """Build (or find) every image the matrix needs; posargs filter (--python 3.14)."""
    compat(session, compat_argv("images", posargs=session.posargs))


@nox.session
def doctor(session: nox.Session) -> None:
    """Check the engine, base image, Pythons and CA bundle a run needs."""
    compat(session, compat_argv("doctor", posargs=session.posargs))


@nox.session
def report(session: nox.Session) -> None:
    """Write reports/COMPATIBILITY.md, compat.json and index.html from reports/raw."""
    compat(session, compat_argv("report", posargs=session.posargs))


@nox.session
def tests(session: nox.Session) -> None:
    """The project's own tests (uv run pytest); posargs go to pytest."""
    session.run("uv", "run", "pytest", *session.posargs, external=True)


@nox.session
def workflow(session: nox.Session) -> None:
    """Regenerate .github/workflows/matrix.yml (-- --check to only compare)."""
    compat(session, compat_argv("workflow", posargs=session.posargs))
