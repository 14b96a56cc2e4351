"""Shared by the engine-backed tests: the engine (fail under CI, skip elsewhere),
the fixture target's matrix, and images built once per session."""

from __future__ import annotations

import atexit
import functools
import os
from pathlib import Path

import pytest

from compat.errors import EngineError
from compat.matrix import CellBounds as Timeouts
from compat.matrix import Matrix
from compat.matrix import TargetConfig as Target
from compat.runners.engine import Engine

FIXTURE = Path(__file__).with_name("fixture_hang")


def require_engine() -> Engine:
    """A live engine; under CI=true its absence is a failure, not a skip.

    One connection per test process, closed when the process ends: a client
    per test would leave sockets for the garbage collector.
    """
    try:
        return _engine()
    except EngineError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but no container engine answers: {exc}", pytrace=False)
        pytest.skip(f"no container engine: {exc}")


@functools.cache
def _engine() -> Engine:
    engine = Engine.connect()
    atexit.register(engine.close)
    return engine


def fixture_matrix(*, per_cell: float = 30.0, per_test: float = 2.0) -> Matrix:
    return Matrix(
        target=Target(
            path=str(FIXTURE),
            tests=("tests",),
            requirements=("requirements.txt",),
            reaper="backends.reap",
            backend_option="--fixture-backend",
            backend_map={"trio": "ok", "forkserver": "hang", "subint": "missing"},
        ),
        timeouts=Timeouts(per_test=per_test, per_cell=per_cell),
    )


@functools.cache
def image(python: str, group: str = "base") -> str:
    """Build (or find) one image per session; every test shares it."""
    from compat.matrix import Cell
    from compat.runners.images import ensure_images

    ensured = ensure_images(fixture_matrix(), [Cell(python, group, "trio", "fd")], engine=_engine())
    return ensured.tags[(python, group)]
