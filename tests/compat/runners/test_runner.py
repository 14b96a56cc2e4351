"""Real cells in real containers (and one local run): few and small."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import msgspec
import pytest

from compat.matrix import Cell, Matrix, load
from compat.results.raw import read_cell
from compat.results.schema import CellMeta
from compat.runners.schedule import run_cells
from tests.compat import cellsupport
from tests.compat.places import ROOT


def cell(backend: str, python: str = "3.13") -> Cell:
    return Cell(python, "base", backend, "fd")


def read_meta(out: Path) -> CellMeta:
    return msgspec.json.decode((out / "meta.json").read_bytes(), type=CellMeta)


@pytest.fixture
def engine():
    engine = cellsupport.require_engine()
    cellsupport.image("3.13")
    return engine


def test_passing_cell_writes_its_whole_directory(engine, tmp_path):
    [meta] = run_cells(cellsupport.fixture_matrix(), [cell("trio")], out_dir=tmp_path, progress=False)
    out = tmp_path / meta.cell
    assert (meta.outcome, meta.runner, meta.exit_code) == ("completed", "docker", 1)  # test_fails fails
    assert meta.python_version.startswith("3.13.") and "pytest" in meta.packages
    assert meta.image.startswith("sha256:") and meta.limits.pids == 512
    assert read_meta(out) == meta
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "session" and events[-1]["event"] == "finish"
    assert "testcase" in (out / "junit.xml").read_text()
    assert json.loads((out / "reap.json").read_text())["fixture"] is True
    census = json.loads((out / "census.json").read_text())
    assert [p["cmdline"] for p in census["processes"]] == ["sleep 299"]
    assert engine.run_containers(meta.run_id) == []


def test_hanging_cell_times_out_with_dumps_and_the_run_goes_on(engine, tmp_path):
    # The cell's bound, not the test's: it expires first (the test starts after the container).
    matrix = cellsupport.fixture_matrix(per_cell=4, per_test=4)
    hang, after = run_cells(matrix, [cell("forkserver"), cell("trio")], out_dir=tmp_path, progress=False)
    assert hang.outcome == "timeout"
    assert hang.running == "tests/cases_cells.py::test_hangs"
    dumps = {
        p.name.split("-")[0]: p.read_text()
        for p in (tmp_path / hang.cell / "dumps").glob("*.txt")
        if "-tasks-" not in p.name  # the task tree (SIGUSR2) has its own file; this is about the stacks
    }
    assert "test_hangs" in dumps["pytest"]  # asked for on expiry
    assert "child" in dumps  # the child Python too
    signals = json.loads((tmp_path / hang.cell / "hangs" / "01" / "signals.json").read_text())
    assert [p["cmdline"] for p in signals["signalled"] if p["cmdline"].startswith("actor[")] == ["actor[worker@1]"]
    # Only processes that catch SIGUSR1 are sent it; the bystander would have died of it.
    assert any("time.sleep(600)" in p["cmdline"] for p in signals["no_handler"])
    assert not any("time.sleep(600)" in p["cmdline"] for p in signals["signalled"])
    assert read_meta(tmp_path / hang.cell).outcome == "timeout"
    assert after.outcome == "completed"


def test_unsupported_backend_is_recorded_with_its_reason(engine, tmp_path):
    [meta] = run_cells(cellsupport.fixture_matrix(), [cell("subint")], out_dir=tmp_path, progress=False)
    assert (meta.outcome, meta.reason, meta.exit_code) == ("unsupported", "the fixture has no such thing", 4)


def test_python_314_cell(tmp_path):
    cellsupport.require_engine()
    cellsupport.image("3.14")
    [meta] = run_cells(cellsupport.fixture_matrix(), [cell("trio", "3.14")], out_dir=tmp_path, progress=False)
    assert meta.outcome == "completed" and meta.python_version.startswith("3.14.")


INTERRUPTED_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path[:0] = [{root!r}]
    from tests.compat import cellsupport
    from compat.matrix import Cell
    from compat.runners.schedule import run_cells
    run_cells(cellsupport.fixture_matrix(per_cell=120, per_test=120), [Cell("3.13", "base", "forkserver", "fd")],
              run_id={run_id!r}, out_dir=Path({out!r}), progress=False)
    """
)


def test_ctrl_c_removes_every_container_of_the_run(engine, tmp_path):
    run_id = f"test-ctrl-c-{os.getpid()}"
    script = tmp_path / "run.py"
    script.write_text(INTERRUPTED_RUN.format(root=str(ROOT), run_id=run_id, out=str(tmp_path / "raw")))
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not engine.run_containers(run_id):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the run never started a container"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) != 0
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
        left = engine.run_containers(run_id)
        engine.remove_run(run_id)  # a failed run of this test must not leak them
    assert left == []
    meta = read_meta(tmp_path / "raw" / "py3.13-base-forkserver-capfd")
    assert (meta.outcome, meta.run_id) == ("error", run_id) and "interrupted" in meta.reason


def test_a_cell_whose_runner_is_gone_stops_itself(tmp_path):
    # Its runner would have ended it at the cell bound; a SIGKILLed runner
    # cannot, and a container must not then run for ever.
    from compat.cell.protocol import EXPIRED
    from compat.runners.command import entry_spec

    out = tmp_path / "cell"
    out.mkdir()
    matrix = cellsupport.fixture_matrix()
    spec = entry_spec(
        matrix,
        cell("forkserver"),
        out=str(out),
        cwd=str(cellsupport.FIXTURE),
        plugin=str(ROOT),
        extra=("-k", "test_hangs"),
        fresh_dirs=False,
    )
    assert spec["expire_after"] > matrix.timeouts.per_cell
    spec.update(expire_after=2.0, per_test_timeout=None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "compat.cell.entry", "run", json.dumps(spec)],
        cwd=cellsupport.FIXTURE,
        # Our installed runtime must not load into the fixture, which has a "backends" of its own.
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        code = proc.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the hanging test's own child
        proc.wait()
    assert code == EXPIRED
    assert "outlived its runner's bound" in (out / "output.log").read_text()


def test_local_runner_same_outputs_and_unavailable_python(tmp_path):
    matrix = cellsupport.fixture_matrix(per_cell=5, per_test=5)
    cells = [cell("trio"), cell("forkserver"), Cell("3.99", "base", "trio", "fd")]
    ok, hang, missing = run_cells(matrix, cells, runner="local", out_dir=tmp_path, progress=False)
    assert (ok.outcome, ok.runner) == ("completed", "local")
    for name in ("events.jsonl", "junit.xml", "reap.json", "census.json", "output.log", "meta.json"):
        assert (tmp_path / ok.cell / name).is_file(), name
    assert hang.outcome == "timeout" and hang.running == "tests/cases_cells.py::test_hangs"
    assert any((tmp_path / hang.cell / "dumps").glob("pytest-*.txt"))
    signals = json.loads((tmp_path / hang.cell / "hangs" / "01" / "signals.json").read_text())
    assert any(p["cmdline"].startswith("actor[") for p in signals["signalled"])
    assert missing.outcome == "unavailable" and "3.99" in missing.reason
    assert (tmp_path / missing.cell / "meta.json").is_file()


def test_a_second_run_into_the_same_directory_refuses_naming_the_holder(tmp_path):
    from compat.errors import OutputBusy
    from compat.runners.schedule import own_output

    matrix = cellsupport.fixture_matrix()
    with own_output(tmp_path, "first-run"):
        with pytest.raises(OutputBusy) as info:
            run_cells(matrix, [cell("trio")], run_id="second-run", runner="local", out_dir=tmp_path, progress=False)
        assert str(info.value) == (
            f"{tmp_path}: run first-run (pid {os.getpid()}) is writing its results here; wait for it or give --out"
        )
        assert not (tmp_path / cell("trio").id).exists()  # nothing of the second run was written
    # Released with its holder: the next run may write.
    with own_output(tmp_path, "third-run"):
        pass


def test_the_next_run_removes_what_a_killed_runner_left(engine, tmp_path, capfd):
    import socket
    import tempfile

    from compat.runners.base import STAGE_PREFIX
    from compat.runners.docker import DockerRunner
    from compat.runners.engine import CELL_LABEL, RUN_LABEL, RUNNER_LABEL

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    image = cellsupport.image("3.13")

    def leftover(pid: int, name: str):
        labels = {RUN_LABEL: "killed-run", CELL_LABEL: name, RUNNER_LABEL: f"{host}:{pid}"}
        return engine.client.containers.create(image, ["true"], labels=labels)

    leftover(dead.pid, "orphan-cell")
    alive = leftover(os.getpid(), "live-cell")
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{dead.pid}-"))
    try:
        DockerRunner(cellsupport.fixture_matrix(), "next-run", ()).close()
        left = {
            c.id
            for c in engine.client.containers.list(
                all=True, filters={"label": f"{RUN_LABEL}=killed-run"}, ignore_removed=True
            )
        }
        assert left == {alive.id}  # a live runner's container is not ours to take
        assert not stage.exists()
        err = capfd.readouterr().err
        assert "removed a container of a runner that is gone: orphan-cell of run killed-run" in err
        assert f"removed the staged plugin of a runner that is gone: {stage}" in err
    finally:
        engine.remove_run("killed-run")


def test_a_sigkilled_runners_cell_stops_itself_and_the_next_run_sweeps_what_is_left(engine, tmp_path, capfd):
    """A runner killed with SIGKILL cannot stop its cells: they see its lifeline lock go and stop
    themselves (without it they would run out their 120 s bound, and 60 s more); the next run
    removes the stopped container and the staged directory."""
    import tempfile

    from compat.runners.base import STAGE_PREFIX
    from compat.runners.docker import DockerRunner

    run_id = f"test-sigkill-{os.getpid()}"
    raw = tmp_path / "raw"
    script = tmp_path / "run.py"
    script.write_text(INTERRUPTED_RUN.format(root=str(ROOT), run_id=run_id, out=str(raw)))
    runner = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.DEVNULL)
    events = raw / cell("forkserver").id / "events.jsonl"
    try:
        deadline = time.monotonic() + 120
        while not (events.exists() and "tests/cases_cells.py::test_hangs" in events.read_text()):
            assert runner.poll() is None and time.monotonic() < deadline, "the hanging test never started"
            time.sleep(0.2)
        [stage] = Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}{runner.pid}-*")
    finally:
        runner.kill()
        runner.wait()
    try:
        [container] = engine.run_containers(run_id)
        deadline = time.monotonic() + 30
        while container.status != "exited":
            assert time.monotonic() < deadline, "the cell of a SIGKILLed runner is still running"
            time.sleep(0.5)
            container.reload()
        assert "compat: its runner is gone" in (raw / cell("forkserver").id / "output.log").read_text()
        assert stage.exists()
        capfd.readouterr()
        DockerRunner(cellsupport.fixture_matrix(), "next-run", ()).close()
        assert engine.run_containers(run_id) == [] and not stage.exists()
        err = capfd.readouterr().err
        assert f"removed a container of a runner that is gone: {cell('forkserver').id} of run {run_id}" in err
    finally:
        engine.remove_run(run_id)


@pytest.mark.parametrize("python", ["3.13", "3.14"])
def test_what_tests_leave_alive_in_any_target_is_a_leak_named_with_its_test(tmp_path, python):
    from compat.results.raw import read_cell

    cellsupport.require_engine()
    cellsupport.image(python)
    matrix = cellsupport.fixture_matrix()
    matrix = msgspec.structs.replace(matrix, target=msgspec.structs.replace(matrix.target, tests=("leaks",)))
    [meta] = run_cells(matrix, [cell("trio", python)], out_dir=tmp_path, progress=False)
    result = read_cell(tmp_path / meta.cell)
    assert result.status == "leaked", (result.status, result.reason)
    leaky = {n.split("::")[-1]: t.leaked for n, t in result.tests.items() if t.leaked}
    [segment] = leaky.pop("test_leaves_a_shared_memory_segment")
    assert re.fullmatch(r"/dev/shm/fixture-left-\d+", segment), segment
    expected = {"test_leaves_a_thread_running": ("thread 'leftover-worker' running sleeps_forever",)}
    if python == "3.14":
        expected["test_leaves_a_subinterpreter"] = ("sub-interpreter 1",)
    assert leaky == expected
    assert (result.leaks.threads, result.leaks.subinterpreters) == (1, 1 if python == "3.14" else 0)
    assert result.leaks.shm == 1  # the census counts the segment once (the test above names it)
    assert "thread(s) left running by a test" in result.leaks.summary()
    assert all(t.status in ("passed", "skipped") for t in result.tests.values())


def _bare_target(tmp_path: Path, test_body: str, *, memory: str = "2g") -> Matrix:
    """A bare test tree (no pyproject: it runs in this project's own test image)."""
    target = tmp_path / "target"
    (target / "tests").mkdir(parents=True)
    (target / "tests" / "conftest.py").write_text(
        'def pytest_addoption(parser):\n    parser.addoption("--spawn-backend")\n'
    )
    (target / "tests" / "test_it.py").write_text(test_body)
    (tmp_path / "matrix.toml").write_text(
        '[axes]\npython = ["3.13"]\ngroup = ["base"]\nbackend = ["trio"]\ncapture = ["fd"]\n'
        f'[target]\npath = "target"\ntests = ["tests"]\nreaper = ""\n[limits]\nmemory = "{memory}"\n'
    )
    return load(tmp_path / "matrix.toml")


def test_a_memory_kill_is_named(engine, tmp_path):
    matrix = _bare_target(
        tmp_path, "def test_hungry():\n    blocks = [bytearray(2**20) for _ in range(1024)]\n", memory="96m"
    )
    [meta] = run_cells(matrix, matrix.cells(), out_dir=tmp_path / "raw", progress=False)
    assert (meta.outcome, meta.reason) == ("error", "killed: memory limit 96m reached")


def test_one_cells_machinery_failure_is_that_cells_error_and_the_run_goes_on(engine, tmp_path):
    from compat.runners.docker import DockerRunner

    matrix = _bare_target(tmp_path, "def test_ok():\n    pass\n")
    [good] = matrix.cells()
    runner = DockerRunner(matrix, "machinery", ())
    try:
        runner.prepare([good])
        # The engine refuses this one cell: its image vanished after it was prepared.
        runner.images[("3.12", "base")] = "spawn-compat:vanished-image"
        stop = threading.Event()
        failed = runner.run_cell(Cell("3.12", "base", "trio", "sys"), tmp_path / "raw" / "bad", stop)
        passed = runner.run_cell(good, tmp_path / "raw" / good.id, stop)
    finally:
        runner.close()
    assert failed.outcome == "error" and "EngineError" in failed.reason and "vanished-image" in failed.reason
    assert (passed.outcome, passed.exit_code) == ("completed", 0)
    assert read_meta(tmp_path / "raw" / "bad").outcome == "error"


EXHAUST = """
import conftest


def test_a_fills_the_pids_limit():
    conftest.fill()
    assert conftest.KEPT, "the pids limit never bit"


def test_b_runs_with_no_thread_to_spare():
    assert conftest.KEPT


def test_c_frees_them():
    for proc in conftest.KEPT:
        proc.kill()
        proc.wait()
"""

# After test_a, the plugin's per-test watchdog thread exits (asynchronously);
# this hook runs after the plugin's, waits for that, and takes the freed pid
# too, so test_b starts with none to spare, every time.
EXHAUST_CONFTEST = """
import os, subprocess, time
import pytest

KEPT = []


def pytest_addoption(parser):
    parser.addoption("--spawn-backend")


def fill():
    while True:
        try:
            KEPT.append(subprocess.Popen(["sleep", "60"]))
        except OSError:
            return


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid):
    if nodeid.endswith("test_a_fills_the_pids_limit"):
        deadline = time.monotonic() + 10
        while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        fill()
"""


def test_an_exhausted_pids_limit_degrades_the_watchdog_instead_of_crashing(engine, tmp_path):
    matrix = _bare_target(tmp_path, EXHAUST)
    (tmp_path / "target" / "tests" / "conftest.py").write_text(EXHAUST_CONFTEST)
    matrix = msgspec.structs.replace(matrix, limits=msgspec.structs.replace(matrix.limits, pids=32))
    [meta] = run_cells(matrix, matrix.cells(), out_dir=tmp_path / "raw", progress=False)
    assert (meta.outcome, meta.exit_code) == ("completed", 0), (tmp_path / "raw" / meta.cell / "output.log").read_text()
    cell = read_cell(tmp_path / "raw" / meta.cell)
    assert {t.status for t in cell.tests.values()} == {"passed"} and len(cell.tests) == 3
    assert cell.status == "ok"
    [note] = [n for n in cell.notes if "watchdog" in n]
    assert note == (
        "per-test watchdog unavailable from tests/test_it.py::test_b_runs_with_no_thread_to_spare on "
        "(unable to start watchdog thread); only the cell's bound applies"
    )


def test_a_selection_that_matches_nothing_is_a_failed_cell(engine, tmp_path):
    # The fixture's report header says another backend "is unavailable here", as backends' does:
    # that line matches the refusal pattern, and is no refusal of this cell.
    [meta] = run_cells(
        cellsupport.fixture_matrix(), [cell("trio")], out_dir=tmp_path, progress=False, pytest_args=("-k", "typo_xyz")
    )
    assert (meta.outcome, meta.exit_code) == ("error", 5), meta.reason
    assert meta.reason.startswith("pytest collected no tests (exit 5)")
    assert "is unavailable here" in (tmp_path / meta.cell / "output.log").read_text()


def test_a_stale_file_where_a_cell_directory_goes_is_replaced_and_no_other_cell_suffers(engine, tmp_path):
    (tmp_path / cell("trio").id).write_text("left over")
    (tmp_path / cell("subint").id).symlink_to("/nonexistent")
    trio, subint = run_cells(cellsupport.fixture_matrix(), [cell("trio"), cell("subint")], out_dir=tmp_path,
                             progress=False)  # fmt: skip
    assert (trio.outcome, subint.outcome) == ("completed", "unsupported"), (trio.reason, subint.reason)
    assert (tmp_path / trio.cell / "meta.json").is_file() and (tmp_path / subint.cell / "meta.json").is_file()
    assert not trio.interrupted and not subint.interrupted


def test_a_usage_error_after_the_header_is_the_targets_error_not_a_refusal(engine, tmp_path):
    [meta] = run_cells(
        cellsupport.fixture_matrix(), [cell("trio")], out_dir=tmp_path, progress=False, pytest_args=("-k", "(")
    )
    assert (meta.outcome, meta.exit_code) == ("error", 4), meta.reason
    assert "usage error" in meta.reason and "-k" in meta.reason, meta.reason


def test_the_plain_log_names_each_cells_failures_and_annotates_them_on_github(engine, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    matrix = cellsupport.fixture_matrix()
    run_cells(matrix, [cell("trio"), cell("subint")], out_dir=tmp_path, progress=False)
    err = capfd.readouterr().out.splitlines()  # on stdout, as pytest's report
    assert "[1/2] start       py3.13-base-trio-capfd" in err or "[1/2] start       py3.13-base-subint-capfd" in err
    [line] = [x for x in err if x.startswith("[") and "failing" in x]
    assert line.split()[1:3] == ["failing", "py3.13-base-trio-capfd"]
    assert "1 failed" in line and "passed" in line and "xfailed" in line
    [failed] = [x for x in err if x.startswith("    FAILED")]
    assert failed.startswith("    FAILED tests/cases_cells.py::test_fails - AssertionError: assert 'left' == 'right'")
    assert "::group::py3.13-base-trio-capfd: pytest output (last 60 lines)" in err and "::endgroup::" in err
    [annotation] = [x for x in err if x.startswith("::error ")]
    assert annotation.startswith(
        "::error file=tests/cases_cells.py,title=py3.13-base-trio-capfd%3A tests/cases_cells.py%3A%3Atest_fails::"
    )
    [unsupported] = [x for x in err if x.startswith("[") and "unsupported" in x]
    assert unsupported.endswith("the fixture has no such thing (0.0 s)") or "no such thing" in unsupported
    assert "2 cells: 1 failing, 1 unsupported" in err
    assert any(x.startswith("next: compat report --raw ") for x in err)  # a config built in code: the installed tool


def test_two_runs_with_one_run_id_on_one_engine_never_remove_each_others_cells(engine, tmp_path):
    """Jobs of one CI run share COMPAT_RUN_ID and, under act or on a self-hosted runner, an engine."""
    configs = {}
    for name, seconds in (("quick", 0), ("slow", 20)):
        project = tmp_path / name
        (project / "tests").mkdir(parents=True)
        (project / "tests" / "test_t.py").write_text(
            "import os, time\n\ndef test_takes_its_time():\n    time.sleep(float(os.environ['SLEEP']))\n"
        )
        (project / "tests" / "conftest.py").write_text(
            'def pytest_addoption(parser):\n    parser.addoption("--spawn-backend")\n'
        )
        config = project / "compat.toml"
        config.write_text(
            '[axes]\npython = ["3.13"]\nbackend = ["trio"]\ncapture = ["sys"]\n'
            f'[target]\ntests = ["tests"]\n[target.env]\nSLEEP = "{seconds}"\n'
            "[timeouts]\nper-test = 60\nper-cell = 120\n"
        )
        configs[name] = config
    env = {**os.environ, "COMPAT_RUN_ID": f"shared-{os.getpid()}"}
    argv = [sys.executable, "-m", "compat", "run", "--no-progress", "--matrix"]
    slow = subprocess.Popen([*argv, str(configs["slow"])], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The slow cell's container is up before the quick run starts, ends, and cleans up after itself.
        deadline = time.monotonic() + 120
        while not engine.run_containers(env["COMPAT_RUN_ID"]):
            assert time.monotonic() < deadline, "the slow cell never started"
            time.sleep(0.2)
        quick = subprocess.run(
            [*argv, str(configs["quick"])], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert quick.returncode == 0, quick.stderr
        output, _ = slow.communicate(timeout=300)
    finally:
        slow.kill()
    assert slow.returncode == 0, output.decode(errors="replace")[-2000:]
    for name, config in configs.items():
        meta = read_meta(config.parent / "reports" / "raw" / "py3.13-base-trio-capsys")
        assert (meta.outcome, meta.exit_code) == ("completed", 0), (name, meta.reason)
    assert engine.run_containers(env["COMPAT_RUN_ID"]) == []
