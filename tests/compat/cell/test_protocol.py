"""The cell boundary as one contract: the real plugin's output, read by the real reader, no engine.

compat.cell.protocol defines every payload once; the plugin writes them and
compat.results decodes them. These tests hold the two sides to each other:
no field the plugin writes is dropped by the host's structs, and a real
pytest session (with the plugins that add outcomes of their own:
pytest-rerunfailures, pytest-timeout, pytest-xdist) comes out of the real
reader with the statuses the table shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import msgspec
import pytest

from compat.cell import protocol as P
from compat.results import events as E
from compat.results.raw import read_cell
from compat.results.schema import CellMeta
from compat.runners.base import write_meta
from tests.compat.places import ROOT

CELL = "py3.13-base-trio-capfd"

HOST = {
    "session": E._Session,
    "collected": E._Collected,
    "start": E._Start,
    "result": E._Result,
    "note": E._Note,
    "finish": E._Finish,
    "killed": E._Killed,
    "died": E._Died,
    "resume": E._Resume,
    "leak": E._Leak,
}

TESTS = """
import os, pathlib, time
import pytest

def test_passes():
    pass

def test_fails():
    raise ValueError("the real cause")

@pytest.mark.xfail(reason="known", strict=True)
def test_xfails():
    raise AssertionError

@pytest.mark.xfail(reason="might pass", strict=False)
def test_xpasses_loosely():
    pass

@pytest.mark.xfail(reason="was broken", strict=True)
def test_xpasses_strictly():
    pass

def test_skips():
    pytest.skip("not here")

@pytest.mark.flaky(reruns=2)
def test_fails_once_then_passes(tmp_path_factory):
    marker = pathlib.Path(os.environ["FLAKY_MARKER"])
    if not marker.exists():
        marker.write_text("failed once")
        raise AssertionError("first attempt")

@pytest.mark.timeout(1)
def test_past_its_own_timeout():
    time.sleep(30)
"""


def test_every_field_the_cell_writes_is_one_the_host_reads():
    assert set(HOST) == set(P.EVENT_KINDS)
    for kind, payload in P.EVENT_KINDS.items():
        written = set(typing.get_type_hints(payload)) - {"event"}
        read = {f.name for f in msgspec.structs.fields(HOST[kind])}
        assert written <= read, f"{kind}: the host drops {sorted(written - read)}"


def run_session(tmp_path: Path, *args: str) -> Path:
    """A real pytest session with the cell plugin, then the raw directory a runner would leave."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_outcomes.py").write_text(TESTS)
    (project / "test_skipmod.py").write_text('import pytest\npytest.importorskip("no_such_module", reason="absent")\n')
    out = tmp_path / "raw" / CELL
    (out / P.DUMPS).mkdir(parents=True)
    env = {
        **os.environ,
        P.ENV_EVENTS: str(out / P.EVENTS),
        P.ENV_DUMP_DIR: str(out / P.DUMPS),
        "FLAKY_MARKER": str(tmp_path / "flaky-marker"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", P.PLUGIN_MODULE, "-p", "no:cacheprovider", *args, "."],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    write_meta(
        out,
        CellMeta(
            cell=CELL, python="3.13", group="base", backend="trio", capture="fd", run_id="r", runner="local",
            outcome="completed", exit_code=1,
        ),
    )  # fmt: skip
    return out


@pytest.mark.parametrize("xdist", [False, True], ids=["one-process", "xdist-in-the-cell"])
def test_a_real_session_reads_back_as_the_table_shows_it(tmp_path: Path, xdist: bool) -> None:
    out = run_session(tmp_path, *(["-n", "2"] if xdist else []))
    cell = read_cell(out)
    got = {n.split("::")[-1]: (t.status, t.strict) for n, t in cell.tests.items()}
    assert got == {
        "test_passes": ("passed", None),
        "test_fails": ("failed", None),
        "test_xfails": ("xfailed", True),
        "test_xpasses_loosely": ("xpassed", False),
        "test_xpasses_strictly": ("xpassed", True),
        "test_skips": ("skipped", None),
        "test_fails_once_then_passes": ("flaky", None),  # pytest-rerunfailures' retry
        "test_past_its_own_timeout": ("timeout", None),  # pytest-timeout's bound
        "test_skipmod.py": ("skipped", None),
    }
    by_name = {n.split("::")[-1]: t for n, t in cell.tests.items()}
    assert by_name["test_fails"].reason == "ValueError: the real cause"
    assert by_name["test_fails_once_then_passes"].reason.startswith("failed 1 time(s), then passed")
    assert by_name["test_past_its_own_timeout"].reason.startswith("pytest-timeout: Failed: Timeout (>1.0s)")
    assert cell.status == "failing" and cell.problem is None
    # What it collected is what it may still owe a result for, with xdist too.
    events = E.parse_events((out / P.EVENTS).read_bytes())
    assert events.collected is not None and len(events.collected) == 8
    assert events.damage is None and events.finished
