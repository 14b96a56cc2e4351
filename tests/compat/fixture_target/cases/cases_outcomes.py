"""One test per outcome; which cells see which outcome is documented per test
and asserted by tests/compat/test_report_e2e.py."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def test_passes():
    assert True


def test_fails_only_on_forkserver(backend):
    assert backend != "forkserver", "forkserver breaks this"


@pytest.fixture
def broken_on_fd(capture):
    if capture == "fd":
        raise RuntimeError("fixture cannot start under capture=fd")


def test_setup_error_under_fd(broken_on_fd):
    pass


@pytest.mark.xfail(reason="known: see fixture-known-issue", strict=False)
def test_xfails_with_reason():
    raise AssertionError("expected")


@pytest.mark.xfail(reason="was broken, now passes", strict=False)
def test_xpasses_non_strict():
    pass


@pytest.mark.xfail("config.getoption('--target-backend') == 'forkserver'", reason="forkserver was broken", strict=True)
def test_xpasses_strict_on_forkserver():
    pass


def test_skips_with_reason():
    pytest.skip("not relevant to this target")


def test_fails_only_with_capture_fd(capture):
    assert capture != "fd", "output went to the wrong fd"


def test_fails_only_on_314():
    assert sys.version_info < (3, 14), "3.14 changed this"


def test_needs_greenback():
    try:
        import greenback  # noqa: F401
    except ImportError:
        pytest.fail("greenback is not installed")


def _state_dir() -> Path:
    d = Path(os.environ.get("FIXTURE_STATE_DIR") or Path(tempfile.gettempdir()) / "fixture-target-state")
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_flaky_first_run_fails():
    marker = _state_dir() / "flaky-ran-once"
    if not marker.exists():
        marker.touch()
        pytest.fail("first run fails; every later run passes")


def test_leaks_a_process_on_trio_capture_no(backend, capture):
    if backend == "trio" and capture == "no":
        # Deliberately never waited for: the census must find it.
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # fixture-leak"])
