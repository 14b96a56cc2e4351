"""The cell plugin on the host's interpreter: no engine needed."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.compat import cellsupport
from tests.compat.places import ROOT

EXTRA = """
import time
import pytest

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

@pytest.fixture
def skipping_setup():
    pytest.skip("setup says no")

def test_teardown_error(broken_teardown):
    pass

def test_setup_skip(skipping_setup):
    pass

@pytest.mark.xfail(reason="might fail", strict=False)
def test_xpass():
    pass

def test_slow():
    time.sleep(0.6)
"""


def run_plugin(tmp_path: Path, *args: str, cwd: Path) -> tuple[list[dict], Path]:
    events, dumps = tmp_path / "events.jsonl", tmp_path / "dumps"
    env = {
        **os.environ,
        "COMPAT_EVENTS_FILE": str(events),
        "BACKENDS_DUMP_DIR": str(dumps),
        "COMPAT_PER_TEST_TIMEOUT": "0.3",
        "PYTHONPATH": f"{ROOT}:{cwd}",
        # The host venv has the project installed; its entry-point plugin is not under test.
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "compat.cell.plugin", "-p", "no:cacheprovider", *args],
        cwd=cwd, env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return [json.loads(line) for line in events.read_text().splitlines()], dumps


def results(events: list[dict]) -> dict[str, dict]:
    return {e["nodeid"].rsplit("::", 1)[-1]: e for e in events if e["event"] == "result"}


def test_fixture_target_events(tmp_path):
    events, _ = run_plugin(tmp_path, "tests", "--fixture-backend=ok", "-k", "not leaks", cwd=cellsupport.FIXTURE)
    assert events[0]["event"] == "session" and events[-1] == {**events[-1], "event": "finish", "exitstatus": 1}
    got = {name: r["outcome"] for name, r in results(events).items()}
    assert got == {
        "test_passes": "passed",
        "test_skips": "skipped",
        "test_xfails": "xfailed",
        "test_fails": "failed",
        "test_hangs": "skipped",
        "test_after_hang": "passed",
    }
    by_name = results(events)
    assert by_name["test_xfails"]["strict"] is True and by_name["test_xfails"]["reason"] == "known to fail"
    assert "AssertionError" in by_name["test_fails"]["message"]
    assert by_name["test_skips"]["reason"] == "nothing to see"
    starts = [e["nodeid"] for e in events if e["event"] == "start"]
    assert len(starts) == len(by_name)


def test_phases_and_per_test_bound(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_extra.py").write_text(EXTRA)
    events, dumps = run_plugin(tmp_path, "test_extra.py", cwd=project)
    by_name = results(events)
    assert (by_name["test_teardown_error"]["outcome"], by_name["test_teardown_error"]["when"]) == ("error", "teardown")
    assert (by_name["test_setup_skip"]["outcome"], by_name["test_setup_skip"]["when"]) == ("skipped", "setup")
    assert by_name["test_setup_skip"]["reason"] == "setup says no"
    assert (by_name["test_xpass"]["outcome"], by_name["test_xpass"]["strict"]) == ("xpassed", False)
    assert by_name["test_slow"]["overtime"] is True and by_name["test_xpass"]["overtime"] is False
    overtime = next(dumps.glob("overtime-*.txt")).read_text()
    assert "test_slow ran past" in overtime and "test_xpass" not in overtime
    assert "time.sleep" in overtime or "test_slow" in overtime


def test_inert_without_events_file(tmp_path):
    """Loaded into any pytest (a repro, a target's own run) without its file, it registers nothing."""
    env = {k: v for k, v in os.environ.items() if k != "COMPAT_EVENTS_FILE"}
    env["PYTHONPATH"] = f"{ROOT}:{cellsupport.FIXTURE}"
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    argv = [sys.executable, "-m", "pytest", "-p", "compat.cell.plugin", "-p", "no:cacheprovider", "--trace-config",
            "-q", "tests", "-k", "passes"]  # fmt: skip
    run = functools.partial(
        subprocess.run, argv, cwd=cellsupport.FIXTURE, capture_output=True, text=True, timeout=60, check=False
    )
    inert = run(env=env)
    assert inert.returncode == 0, inert.stdout
    assert "CellPlugin object" not in inert.stdout and "Strictness object" not in inert.stdout
    # The same run with the file registers both, and writes it: the check above can fail.
    events = tmp_path / "events.jsonl"
    active = run(env={**env, "COMPAT_EVENTS_FILE": str(events)})
    assert active.returncode == 0 and "CellPlugin object" in active.stdout
    assert events.read_text().count('"event": "result"') == 1


def test_collection_skips_the_collected_ids_and_the_crash_message(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_skipmod.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_here", reason="needs the module")\n'
        "def test_x():\n    pass\n"
    )
    (project / "test_run.py").write_text(
        "def test_a():\n    pass\n\n"
        "def test_b():\n    assert {'a': 1} == {'a': 2}, 'dicts differ'\n\n"
        "def test_c():\n    raise ValueError('the real cause')\n"
    )
    events, _ = run_plugin(tmp_path, ".", cwd=project)
    collected = next(e for e in events if e["event"] == "collected")
    assert collected["nodeids"] == ["test_run.py::test_a", "test_run.py::test_b", "test_run.py::test_c"]
    skip = next(e for e in events if e["event"] == "result" and e["nodeid"] == "test_skipmod.py")
    assert (skip["outcome"], skip["when"], skip["reason"]) == ("skipped", "collect", "needs the module")
    by_name = results(events)
    assert by_name["test_c"]["crash"] == "ValueError: the real cause"
    assert by_name["test_c"]["lineno"] == 8 and by_name["test_c"]["path"].endswith("test_run.py")
    assert by_name["test_b"]["crash"].startswith("AssertionError: dicts differ")
