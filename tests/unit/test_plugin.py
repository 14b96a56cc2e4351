"""The pytest plugin, driven through pytester in subprocesses.

Inner sessions run out of process: their session reaper acts on the
descendants of the pytest process, which must not be this one.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

import backends

from .conftest import gone, kill_tree

pytest_plugins = ["pytester"]

AVAILABLE = [n for n, r in backends.available_backends().items() if r is None]
UNAVAILABLE = {n: r for n, r in backends.available_backends().items() if r is not None}

# Inner tests leak or hold a real actor-titled process.
LEAKER = """
import os, subprocess, sys
from pathlib import Path

def titled(title, seconds=60):
    code = (
        "import setproctitle, sys, time\\n"
        f"setproctitle.setproctitle({title!r}); setproctitle.setthreadtitle({title!r})\\n"
        "print('up', flush=True)\\n"
        f"time.sleep({seconds})\\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\\n"
    return proc

def record(pid):
    with open(os.environ["PIDS_FILE"], "a") as f:
        f.write(f"{pid}\\n")
"""


@pytest.fixture
def inner(pytester, tmp_path, monkeypatch):
    pids_file = tmp_path / "pids.txt"
    pids_file.touch()
    monkeypatch.setenv("PIDS_FILE", str(pids_file))
    monkeypatch.setenv("BACKENDS_RUNTIME_DIR", str(tmp_path / "rt"))
    monkeypatch.delenv("BACKENDS_DUMP_DIR", raising=False)
    monkeypatch.delenv("BACKENDS_SPAWN_BACKEND", raising=False)
    pytester.makepyfile(leaker=LEAKER)
    yield pytester
    for line in pids_file.read_text().split():
        kill_tree(int(line))


def run(pytester, *args: str):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


# --- --spawn-backend ------------------------------------------------------------------


def test_unknown_backend_is_a_usage_error_listing_valid_names(inner):
    result = run(inner, "--spawn-backend=bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "unknown spawn backend 'bogus'" in err
    assert all(name in err for name in backends.BACKEND_NAMES)


@pytest.mark.skipif(not UNAVAILABLE, reason="every backend is available on this interpreter")
def test_unavailable_backend_is_a_usage_error_with_the_reason(inner):
    name, reason = next(iter(UNAVAILABLE.items()))
    result = run(inner, f"--spawn-backend={name}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"is unavailable here: {reason}" in result.stderr.str()


def test_single_backend_keeps_node_ids_and_sets_the_environment(inner):
    inner.makepyfile(
        test_one="""
        import os
        def test_fixture(spawn_backend):
            assert spawn_backend == "trio"
            assert os.environ["BACKENDS_SPAWN_BACKEND"] == "trio"
        def test_no_fixture():
            assert os.environ["BACKENDS_SPAWN_BACKEND"] == "trio"
    """
    )
    result = run(inner, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_one.py::test_fixture PASSED*"])
    assert "[trio]" not in result.stdout.str()


@pytest.mark.skipif(len(AVAILABLE) < 2, reason="needs two available backends")
def test_all_parametrises_over_available_backends_and_lists_the_rest(inner):
    inner.makepyfile(
        test_all="""
        import os
        import backends
        def test_env(spawn_backend):
            assert os.environ["BACKENDS_SPAWN_BACKEND"] == spawn_backend
            assert backends.spawn.resolve(None) == spawn_backend
    """
    )
    result = run(inner, "-v", "--spawn-backend=all")
    result.assert_outcomes(passed=len(AVAILABLE))
    result.stdout.fnmatch_lines([f"*test_env[[]{n}[]] PASSED*" for n in AVAILABLE])
    for name, reason in UNAVAILABLE.items():
        result.stdout.fnmatch_lines([f"spawn backend {name} is unavailable here: {reason}"])
    assert "BACKENDS_SPAWN_BACKEND" not in os.environ  # nothing leaked out here either


@pytest.mark.skipif(len(AVAILABLE) < 2, reason="needs two available backends")
def test_comma_list(inner):
    inner.makepyfile(
        test_list="""
        def test_it(spawn_backend):
            pass
    """
    )
    listed = ",".join(reversed(AVAILABLE[:2]))
    result = run(inner, "-v", f"--spawn-backend={listed}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"*test_it[[]{n}[]]*" for n in reversed(AVAILABLE[:2])])


# --- markers --------------------------------------------------------------------------


def test_markers_at_every_level(inner):
    inner.makepyfile(
        test_marks="""
        import pytest
        pytestmark = pytest.mark.skipon_spawn_backend("trio", reason="module says no")

        def test_module_level(spawn_backend):
            raise AssertionError("must be skipped")

        @pytest.mark.skipon_spawn_backend("forkserver", reason="not here")
        def test_other_backend_named(spawn_backend):
            raise AssertionError("function mark names another backend; module mark applies")
    """
    )
    inner.makepyfile(
        test_marks2="""
        import pytest

        @pytest.mark.skipon_spawn_backend("trio", reason="class says no")
        class TestClass:
            def test_in_class(self, spawn_backend):
                raise AssertionError("must be skipped")

        @pytest.mark.xfailon_spawn_backend("trio", reason="known bug")
        def test_xfail(spawn_backend):
            raise AssertionError("broken on trio")

        @pytest.mark.xfailon_spawn_backend("trio", reason="strict by default")
        def test_xpass_strict(spawn_backend):
            pass

        @pytest.mark.xfailon_spawn_backend("trio", reason="lenient", strict=False)
        def test_xpass_lenient(spawn_backend):
            pass

        @pytest.mark.xfailon_spawn_backend("forkserver", reason="other backend")
        def test_not_marked_here(spawn_backend):
            pass
    """
    )
    result = run(inner, "-rsxX", "--spawn-backend=trio")
    result.assert_outcomes(skipped=3, xfailed=1, failed=1, xpassed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*XPASS(strict)*strict by default*",
            "*module says no*",
            "*class says no*",
            "*known bug*",
        ]
    )


def test_unknown_backend_in_a_marker_is_a_collection_error(inner):
    inner.makepyfile(
        test_typo="""
        import pytest
        @pytest.mark.skipon_spawn_backend("trio", "forksrever", reason="typo")
        def test_it():
            pass
        def test_other():
            pass
    """
    )
    result = run(inner)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting test_typo.py*", "*unknown spawn backend 'forksrever'*"])


# --- the leak check -----------------------------------------------------------------------


def test_leaked_process_fails_the_test_and_is_reaped(inner):
    inner.makepyfile(
        test_leak="""
        from leaker import record, titled
        def test_leaks(spawn_backend):
            record(titled("backends[leaky]").pid)
        def test_clean(spawn_backend):
            p = titled("backends[tidy]")
            p.kill(); p.wait()
        def test_no_fixture_is_not_checked():
            record(titled("backends[unchecked]").pid)
    """
    )
    result = run(inner, "-rfE", "--backends-leak-wait=0.5")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_leaks*", "test leaked (now reaped):", "*backends[[]leaky[]]*running*"]
    )
    # The session reaper took the unchecked one at the end, and said so.
    result.stdout.fnmatch_lines(["*backends reaper*", "*backends[[]unchecked[]]*"])
    pids = [int(x) for x in Path(os.environ["PIDS_FILE"]).read_text().split()]
    assert len(pids) == 2 and all(gone(p) for p in pids)


def test_a_leak_that_goes_away_by_itself_is_waited_for(inner):
    inner.makepyfile(
        test_slow="""
        import subprocess, sys
        def test_slow_exit(spawn_backend):
            code = ("import setproctitle, time; setproctitle.setproctitle('backends[slow]');"
                    " print('up', flush=True); time.sleep(0.3)")
            # The intermediate is not ours; the actor below it exits on its own.
            middle = subprocess.Popen([sys.executable, "-c",
                "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]])",
                code], stdout=subprocess.PIPE)
            assert middle.stdout.readline() == b"up\\n"
    """
    )
    result = run(inner, "--backends-leak-wait=10")
    result.assert_outcomes(passed=1)


def test_leaked_shm_and_socket_files_fail_the_test(inner, tmp_path):
    token = secrets.token_hex(4)
    inner.makepyfile(
        test_files=f"""
        import os, socket
        from pathlib import Path
        def test_shm(spawn_backend):
            fd = os.open(f"/dev/shm/backends-{token}-{{os.getpid()}}-0",
                         os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        def test_socket(spawn_backend):
            run = Path(os.environ["BACKENDS_RUNTIME_DIR"]) / f"run-{{os.getpid()}}-{token}"
            run.mkdir(parents=True)
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(run / f"w@{{os.getpid()}}.sock"))
            s.close()
        def test_someone_elses_segment(spawn_backend):
            # Named for pid 1, which is alive and not below this pytest: not ours.
            fd = os.open("/dev/shm/backends-{token}-1-0", os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
    """
    )
    try:
        result = run(inner, "-rE", "--backends-leak-wait=0.3")
        result.assert_outcomes(passed=3, errors=2)
        result.stdout.fnmatch_lines([f"*shm segment /dev/shm/backends-{token}-*-0*"])
        result.stdout.fnmatch_lines([f"*socket path */run-*-{token}*"])
        assert [p.name for p in Path("/dev/shm").glob(f"backends-{token}-*")] == [f"backends-{token}-1-0"]
        assert list((tmp_path / "rt").iterdir()) == []
    finally:
        for path in Path("/dev/shm").glob(f"backends-{token}-*"):
            path.unlink()


def test_no_leak_check_leaves_it_to_the_session_reaper_and_the_report(inner, tmp_path):
    inner.makepyfile(
        test_leak="""
        from leaker import record, titled
        def test_leaks(spawn_backend):
            record(titled("backends[for-the-reaper]").pid)
    """
    )
    report_path = tmp_path / "out" / "leaks.json"
    result = run(inner, "--no-backends-leak-check", f"--backends-leak-report={report_path}")
    result.assert_outcomes(passed=1)
    report = json.loads(report_path.read_text())
    assert set(report) == {"processes", "signalled", "escalated", "shm", "uds"}
    [proc] = report["processes"]
    assert proc["title"] == "backends[for-the-reaper]" and proc["outcome"] == "exited"
    assert report["signalled"] == 1 and report["escalated"] == 0
    assert gone(proc["pid"])


# --- hang dumps ---------------------------------------------------------------------------


@pytest.mark.parametrize("capture", ["fd", "sys", "no"])
def test_dump_dir_gets_the_pytest_process_stacks(inner, tmp_path, capture):
    dumps = tmp_path / "dumps"
    inner.makepyfile(
        test_dump="""
        import os, signal
        from pathlib import Path
        def test_dump():
            directory = Path(os.environ["BACKENDS_DUMP_DIR"])
            os.kill(os.getpid(), signal.SIGUSR1)
            text = (directory / f"pytest-{os.getpid()}.txt").read_text()
            assert "test_dump" in text and "Current thread" in text
    """
    )
    result = run(inner, f"--capture={capture}", f"--backends-dump-dir={dumps}")
    result.assert_outcomes(passed=1)
    assert [p.name.split("-")[0] for p in dumps.iterdir()] == ["pytest"]


# --- xdist --------------------------------------------------------------------------------


def test_xdist_workers_check_only_their_own_descendants(inner, tmp_path):
    sync = tmp_path / "sync"
    sync.mkdir()
    inner.makeconftest(f"""
        import pytest
        from pathlib import Path
        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_teardown(item):
            yield
            if item.name == "test_b":
                Path({str(sync)!r}, "b-done").touch()
    """)
    inner.makepyfile(
        test_pair=f"""
        import time
        from pathlib import Path
        from leaker import record, titled
        SYNC = Path({str(sync)!r})
        def wait_for(name):
            deadline = time.monotonic() + 60
            while not (SYNC / name).exists():
                assert time.monotonic() < deadline, f"no {{name}}"
                time.sleep(0.01)
        def test_a(spawn_backend):
            p = titled("backends[held-by-a]")
            record(p.pid)
            (SYNC / "a-up").touch()
            wait_for("b-done")  # b's leak check ran while this process lived
            p.kill(); p.wait()
        def test_b(spawn_backend):
            wait_for("a-up")
        def test_c_leaks(spawn_backend):
            record(titled("backends[leak-in-worker]").pid)
    """
    )
    report_path = tmp_path / "leaks.json"
    result = run(
        inner, "-n", "2", "--dist", "load", "-rE", "--backends-leak-wait=0.3", f"--backends-leak-report={report_path}"
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_c_leaks*",
            "*",
            "test leaked (now reaped):",
            "*backends[[]leak-in-worker[]]*running*",
        ]
    )
    report = json.loads(report_path.read_text())
    assert [p["title"] for p in report["processes"]] == ["backends[leak-in-worker]"]


def test_xdist_session_reaper_collects_from_workers(inner, tmp_path):
    inner.makepyfile(
        test_leak="""
        from leaker import record, titled
        def test_one(spawn_backend):
            record(titled("backends[worker-leak-1]").pid)
        def test_two(spawn_backend):
            record(titled("backends[worker-leak-2]").pid)
    """
    )
    report_path = tmp_path / "leaks.json"
    result = run(inner, "-n", "2", "--no-backends-leak-check", f"--backends-leak-report={report_path}")
    result.assert_outcomes(passed=2)
    report = json.loads(report_path.read_text())
    assert sorted(p["title"] for p in report["processes"]) == ["backends[worker-leak-1]", "backends[worker-leak-2]"]
    result.stdout.fnmatch_lines(["*backends reaper*"])
