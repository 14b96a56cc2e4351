"""Fixtures shared by the compat service's tests; keep this small.

The suite runs distributed by module (``--dist loadscope``): a module's
fixtures (a run of real cells) are made once, on one worker, while another
module's cells may run at the same time on the same engine. That is what
users do too, so compat serialises its own image, venv and wheel builds
(``compat.runners.locks``) and removes only the containers it made.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The fixture projects are other projects, with tests of their own that only cells run.
collect_ignore_glob = ["fixture_*"]


@pytest.fixture
def write_matrix(tmp_path: Path):
    """Write a matrix.toml with the given text into a fresh directory; return its path.

    The directory holds the default test path, so a matrix with the default
    target is valid there.
    """
    (tmp_path / "tests" / "backends").mkdir(parents=True, exist_ok=True)

    def write(text: str, name: str = "matrix.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def noxfile() -> ModuleType:
    """The project's noxfile, imported once (importing registers its sessions with nox)."""
    saved = dict(os.environ)
    spec = importlib.util.spec_from_file_location("compat_noxfile", ROOT / "noxfile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        # The noxfile sets COMPAT_RUN_ID for its sessions; keep it out of other tests.
        os.environ.clear()
        os.environ.update(saved)
    return module
