import os
from pathlib import Path

import wirekit


def test_describe(backend, wire):
    assert wirekit.describe(backend, wire) == f'backend = "{backend}"\nwire = "{wire}"\n'


def test_wire(backend, wire):
    if backend == "fork" and wire == "tcp":
        raise ConnectionError(f"the {backend} backend cannot share a {wire} listener")


def test_runtime_dir_is_writable():
    state = Path(os.environ["WIREKIT_STATE"])
    state.mkdir(parents=True, exist_ok=True)
    (state / "probe").write_text("ok")
    assert Path(os.environ["XDG_RUNTIME_DIR"]).is_dir()
