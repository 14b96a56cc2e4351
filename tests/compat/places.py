"""Where things are, for tests in any subdirectory of tests/compat (laid out like compat/)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def fixture(name: str) -> Path:
    """A fixture project (a target that is not ours): tests/compat/fixture_<name>."""
    return HERE / f"fixture_{name}"
