"""backends-reap against real processes, segments and socket files.

Orphan mode scans the whole machine, so it runs inside a private pid
namespace (the shape of a container): the only orphans it can see are the
ones the test made, and nothing else on the host is at risk.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
import pytest

from backends import _paths, reap

from .conftest import gone, kill_tree, python_env, start_actor, state, wait_until

REAP = [sys.executable, "-m", "backends.reap"]
REPORT_KEYS = {"processes", "signalled", "escalated", "shm", "uds"}


def run_reap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*REAP, *args], check=False, capture_output=True, text=True, timeout=60, env=env or python_env()
    )


# --- _paths ----------------------------------------------------------------------


def test_socket_name_is_sanitised_bounded_and_parses_back():
    name = _paths.socket_name("a b/c[d]" + "x" * 60, 1234)
    assert name == "a_b_c_d_" + "x" * 32 + "@1234.sock"
    assert _paths.parse_socket_name(name) == ("a_b_c_d_" + "x" * 32, 1234)
    assert _paths.socket_name("worker", 1234, interp=7) == "worker@1234.7.sock"
    assert _paths.parse_socket_name("worker@1234.7.sock") == ("worker", 1234)
    assert _paths.parse_socket_name("worker@0.sock") is None
    assert _paths.parse_socket_name("worker@12.socket") is None
    assert _paths.parse_socket_name("wor ker@12.sock") is None
    assert _paths.parse_socket_name("@12.sock") is None


def test_run_dir_names_parse_back():
    assert _paths.parse_run_dir_name(_paths.run_dir_name(42, "0a1b2c3d")) == 42
    assert _paths.parse_run_dir_name("run-42-0A1B2C3D") is None
    assert _paths.parse_run_dir_name("run-42-0a1b2c3") is None


def test_shm_names_parse_back_and_their_glob_matches_only_their_process():
    import fnmatch

    name = _paths.shm_name("0a1b2c3d4e5f6a7b", 4321, 0)
    assert name == "backends-0a1b2c3d4e5f6a7b-4321-0"
    assert _paths.parse_shm_name(name) == ("0a1b2c3d4e5f6a7b", 4321)
    assert fnmatch.fnmatch(name, _paths.shm_glob("0a1b2c3d4e5f6a7b", 4321))
    assert fnmatch.fnmatch(name, _paths.shm_glob("0a1b2c3d4e5f6a7b"))
    assert not fnmatch.fnmatch(name, _paths.shm_glob("0a1b2c3d4e5f6a7b", 432))
    assert not fnmatch.fnmatch(_paths.shm_name("0a1b2c3d4e5f6a7b", 43210, 0), _paths.shm_glob("0a1b2c3d4e5f6a7b", 4321))
    for bad in ("backends-xyz-1-0", "backends-0a1b-0-1", "other-0a1b-12-0", "backends-0a1b-12"):
        assert _paths.parse_shm_name(bad) is None, bad


def test_runtime_base_precedence(monkeypatch):
    monkeypatch.setenv("BACKENDS_RUNTIME_DIR", "/x/explicit")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/x/xdg")
    assert _paths.runtime_base() == Path("/x/explicit")
    monkeypatch.delenv("BACKENDS_RUNTIME_DIR")
    assert _paths.runtime_base() == Path("/x/xdg/backends")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert _paths.runtime_base() == Path(f"/tmp/backends-{os.getuid()}")


# --- bad arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--grace", "-1"], "--grace"),
        (["--grace", "nan"], "--grace"),
        (["--grace", "soon"], "--grace"),
        (["--parent", "abc"], "--parent"),
        (["--parent", "0"], "--parent"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, needle):
    result = run_reap(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("backends-reap: error:"), result.stderr
    assert needle in lines[0]
    assert result.stdout == ""


def test_parent_that_does_not_exist_is_a_usage_error(actor_script):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    result = run_reap("--parent", str(proc.pid))
    assert result.returncode == 2
    assert f"no process with pid {proc.pid}" in result.stderr


# --- descendant mode (scoped to a tree this test owns: safe on a shared host) ----------


def test_parent_mode_reaps_our_subtrees_and_nothing_else(actor_script, spawned):
    # parent (not ours) -> ours-1, ours-2 -> grandchild (not ours), innocent (not ours)
    parent, _ = start_actor(actor_script, "-", "wait")
    spawned.append(parent)
    script = (
        "import subprocess, sys\n"
        f"a = {actor_script!r}\n"
        "specs = [['backends[reaptest-1]', 'wait'], ['backends[reaptest-2]', 'wait', '-'],"
        " ['-', 'wait']]\n"
        "out = [subprocess.Popen([sys.executable, a, *s], stdout=subprocess.PIPE,"
        " stdin=subprocess.DEVNULL) for s in specs]\n"
        "print('|'.join(p.stdout.readline().decode().strip() for p in out), flush=True)\n"
        "sys.stdin.read()\n"
    )
    middle = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    spawned.append(middle)
    (ours1,), (ours2, grandchild), (innocent,) = (
        [int(x) for x in part.split()] for part in middle.stdout.readline().decode().split("|")
    )

    dry = run_reap("--parent", str(middle.pid), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert set(report) == REPORT_KEYS
    assert {p["pid"]: p["outcome"] for p in report["processes"]} == {
        ours1: "would-signal",
        ours2: "would-signal",
        grandchild: "would-signal",
    }
    assert report["signalled"] == report["escalated"] == 0
    assert not any(gone(p) for p in (ours1, ours2, grandchild, innocent))

    real = run_reap("--parent", str(middle.pid), "--json", "--grace", "5")
    assert real.returncode == 0, real.stderr
    report = json.loads(real.stdout)
    assert report["signalled"] == 3 and report["escalated"] == 0
    outcomes = {p["pid"]: p["outcome"] for p in report["processes"]}
    assert outcomes == {ours1: "exited", ours2: "exited", grandchild: "exited"}
    titles = {p["pid"]: p["title"] for p in report["processes"]}
    assert titles[ours1] == "backends[reaptest-1]"
    assert all(gone(p) for p in (ours1, ours2, grandchild))
    assert state(innocent) not in (None, "Z")
    assert state(middle.pid) not in (None, "Z")
    assert middle.poll() is None


def test_human_output_names_each_process(actor_script, spawned):
    holder, _ = start_actor(actor_script, "-", "stubborn", "backends[reaptest-human]")
    spawned.append(holder)
    result = run_reap("--parent", str(holder.pid), "--dry-run")
    assert result.returncode == 0
    assert "backends[reaptest-human]" in result.stdout and "would-signal" in result.stdout


# --- orphan mode, inside a private pid namespace ------------------------------------

SCENARIO = r"""
import json, os, subprocess, sys
actor, orphaner, base = sys.argv[1:4]

def orphans(*specs):
    # stdout only: the orphans keep the inherited stderr open.
    out = subprocess.run([sys.executable, orphaner, actor, *specs], check=True,
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL).stdout
    return [[int(x) for x in part.split()] for part in out.decode().strip().split("|")]

def state(pid):
    from backends._proc import stat
    found = stat(pid)
    return found[0] if found is not None else None

(a,), (stub, stub_child), (zombie,), (innocent,) = orphans(
    "backends[reaptest-a]:wait",
    "backends[reaptest-stubborn]:stubborn:-",
    "backends[reaptest-zombie]:exit-when-orphaned",
    "-:wait",
)
# A live root (owns a run directory) with an actor child: not an orphan.
root = subprocess.Popen([sys.executable, actor, "-", "wait", "backends[reaptest-rootchild]"],
                        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
root_pid, root_child = map(int, root.stdout.readline().split())
os.makedirs(f"{base}/run-{root_pid}-deadbeef")
roles = dict(a=a, stub=stub, stub_child=stub_child, zombie=zombie, innocent=innocent,
             root=root_pid, root_child=root_child, me=os.getpid())
print(json.dumps(roles), flush=True)

CALLER = ("import setproctitle, subprocess, sys\n"
          "setproctitle.setproctitle('backends[reaptest-caller]')\n"
          "setproctitle.setthreadtitle('backends[reaptest-caller]')\n"
          "import os; print(os.getpid(), file=sys.stderr, flush=True)\n"
          "sys.exit(subprocess.call([sys.executable, '-m', 'backends.reap', *sys.argv[1:]]))\n")
for line in sys.stdin:
    cmd = json.loads(line)
    if "reap" in cmd:
        r = subprocess.run([sys.executable, "-c", CALLER, *cmd["reap"]], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        reply = dict(rc=r.returncode, out=r.stdout, err=r.stderr)
    elif "api" in cmd:
        r = subprocess.run([sys.executable, "-c", cmd["api"]], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        reply = dict(rc=r.returncode, out=r.stdout, err=r.stderr)
    else:
        reply = {str(p): state(p) for p in cmd["states"]}
    print(json.dumps(reply), flush=True)
"""

UNSHARE_VARIANTS = (
    ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
    ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"],
)


def _unshare_prefix() -> list[str] | None:
    if shutil.which("unshare") is None:
        return None
    for prefix in UNSHARE_VARIANTS:
        if subprocess.run([*prefix, "true"], check=False, capture_output=True).returncode == 0:
            return prefix
    return None


class PidNamespace:
    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.sel = selectors.DefaultSelector()
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def readline(self, timeout: float = 30.0) -> dict:
        if not self.sel.select(timeout):
            raise AssertionError(f"pid namespace scenario silent for {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"scenario ended (rc {self.proc.wait()})")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.readline()

    def states(self, *pids: int) -> dict[int, str | None]:
        return {int(k): v for k, v in self.ask(states=list(pids)).items()}


@pytest.fixture
def pidns(actor_script, tmp_path):
    prefix = _unshare_prefix()
    if prefix is None:
        pytest.skip("orphan mode is tested in a private pid namespace; unshare is not permitted here")
    base = tmp_path / "rt"
    base.mkdir()
    scenario = tmp_path / "scenario.py"
    scenario.write_text(SCENARIO)
    proc = subprocess.Popen(
        [*prefix, sys.executable, str(scenario), actor_script, str(tmp_path / "orphaner.py"), str(base)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=python_env(BACKENDS_RUNTIME_DIR=str(base)),
        cwd=Path(__file__).parents[2],
    )
    ns = PidNamespace(proc)
    try:
        ns.roles = ns.readline()
        yield ns
    finally:
        # The namespace's init dies with unshare (--kill-child) and takes every
        # process in the namespace with it.
        proc.kill()
        proc.wait(timeout=10)
        ns.sel.close()
        proc.stdin.close()
        proc.stdout.close()


def test_orphan_mode_dry_run_then_reap_with_escalation(pidns):
    r = pidns.roles
    wait_until(lambda: pidns.states(r["zombie"])[r["zombie"]] == "Z", what="the zombie orphan")
    targets = {r["a"], r["stub"], r["stub_child"], r["zombie"]}
    bystanders = [r["innocent"], r["root"], r["root_child"], r["me"]]

    dry = pidns.ask(reap=["--dry-run", "--json"])
    assert dry["rc"] == 0, dry["err"]
    report = json.loads(dry["out"])
    assert set(report) == REPORT_KEYS
    caller = int(dry["err"].split()[0])
    outcomes = {p["pid"]: p["outcome"] for p in report["processes"]}
    assert outcomes == {
        r["a"]: "would-signal",
        r["stub"]: "would-signal",
        r["stub_child"]: "would-signal",
        r["zombie"]: "zombie",
    }
    assert caller not in outcomes
    after = pidns.states(*targets, *bystanders)
    assert all(after[p] not in (None, "Z") for p in targets - {r["zombie"]}), after

    real = pidns.ask(reap=["--json", "--grace", "0.5"])
    assert real["rc"] == 1, real["err"]  # the stubborn one needed SIGKILL
    report = json.loads(real["out"])
    outcomes = {p["pid"]: p["outcome"] for p in report["processes"]}
    # The stubborn actor's child inherited SIG_IGN for SIGINT across exec.
    assert outcomes == {r["a"]: "exited", r["stub"]: "killed", r["stub_child"]: "killed", r["zombie"]: "zombie"}
    assert report["signalled"] == 3 and report["escalated"] == 2
    assert report["shm"] == [] and report["uds"] == []
    after = pidns.states(*targets, *bystanders)
    assert all(after[p] in (None, "Z") for p in targets), after
    assert all(after[p] not in (None, "Z") for p in bystanders), after

    # The killed orphans are zombies of the namespace's init now: listed, not signalled.
    again = pidns.ask(reap=["--json", "--grace", "0.5"])
    assert again["rc"] == 0, again["err"]
    report = json.loads(again["out"])
    assert report["signalled"] == 0 and report["escalated"] == 0
    assert {p["outcome"] for p in report["processes"]} <= {"zombie"}


def test_protected_roots_are_never_expanded(pidns):
    # Inside the namespace: if this regressed, only the namespace would suffer.
    r = pidns.roles
    result = pidns.ask(
        api=(
            "import os\n"
            "from backends import reap\n"
            "report = reap.reap([os.getpid(), os.getppid(), 1], grace=0.1)\n"
            "print(report.to_json().decode())\n"
        )
    )
    assert result["rc"] == 0, result["err"]
    report = json.loads(result["out"])
    assert report["processes"] == [] and report["signalled"] == 0
    after = pidns.states(*r.values())
    assert all(after[p] not in (None, "Z") for p in r.values() if p != r["zombie"]), after


# --- /dev/shm --------------------------------------------------------------------------


HOLDER = r"""
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(os.open(sys.argv[2], os.O_RDWR), 4096)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def shm_token():
    token = f"reaptest{secrets.token_hex(4)}"
    yield token
    for path in Path("/dev/shm").glob(f"*{token}*"):
        path.unlink(missing_ok=True)


def _segment(name: str, uid: int | None = None) -> Path:
    path = Path("/dev/shm") / name
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, 4096)
    os.close(fd)
    if uid is not None:
        os.chown(path, uid, -1)
    return path


def test_shm_sweep_keeps_segments_in_use_and_foreign_ones(shm_token, spawned):
    prefix = f"{_paths.SHM_PREFIX}{shm_token}-"
    orphan = _segment(f"{prefix}{os.getpid()}-0")
    held_open = _segment(f"{prefix}{os.getpid()}-1")
    mapped = _segment(f"{prefix}{os.getpid()}-2")
    not_ours = _segment(f"other-{shm_token}-0")
    foreign_owner = _segment(f"{prefix}{os.getpid()}-3", uid=65534) if os.geteuid() == 0 else None
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(held_open), str(mapped)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    spawned.append(holder)
    assert holder.stdout.readline() == "ready\n"

    assert reap.find_orphan_shm(prefix=prefix) == [orphan]
    assert reap.sweep_shm(prefix=prefix, dry_run=True) == [str(orphan)]
    assert orphan.exists()
    assert reap.sweep_shm(prefix=prefix) == [str(orphan)]
    assert not orphan.exists()
    for kept in (held_open, mapped, not_ours, foreign_owner):
        assert kept is None or kept.exists()

    holder.stdin.close()
    holder.wait(timeout=10)
    assert reap.sweep_shm(prefix=prefix) == sorted([str(held_open), str(mapped)])


def test_cli_shm_dry_run_lists_and_keeps(shm_token, actor_script, spawned):
    orphan = _segment(f"{_paths.SHM_PREFIX}{shm_token}-{os.getpid()}-0")
    leaf, _ = start_actor(actor_script, "-", "wait")  # scopes the process phase to nothing
    spawned.append(leaf)
    result = run_reap("--parent", str(leaf.pid), "--shm", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert str(orphan) in json.loads(result.stdout)["shm"]
    assert orphan.exists()


# --- socket files ------------------------------------------------------------------------


def _socket_file(path: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file outlives the socket, as after a hard kill
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def short_dir():
    """A directory with a short path: socket paths must fit in 107 bytes, and
    tmp_path under xdist (`.../popen-gw1/<test name>0/`) can be too long."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_uds_sweep_removes_dead_actors_and_dead_roots_only(short_dir, actor_script, spawned):
    base = short_dir
    live, _ = start_actor(actor_script, "backends[reaptest-live]", "wait")
    spawned.append(live)
    dead = _dead_pid()
    dead_root_clean = base / f"run-{dead}-aaaaaaaa"
    dead_root_cluttered = base / f"run-{dead}-bbbbbbbb"
    live_root = base / f"run-{live.pid}-cccccccc"
    for d in (dead_root_clean, dead_root_cluttered, live_root):
        d.mkdir()
    expected = [
        _socket_file(dead_root_clean / f"w@{dead}.sock"),
        _socket_file(dead_root_cluttered / f"w@{dead}.sock"),
        _socket_file(live_root / f"gone@{dead}.sock"),
        dead_root_clean,
    ]
    kept = [
        _socket_file(live_root / f"live@{live.pid}.sock"),
        _socket_file(base / "unrecognised.sock"),
        dead_root_cluttered / "notes.txt",
        live_root / f"regular@{dead}.sock",
        dead_root_cluttered,
        live_root,
    ]
    kept[2].write_text("not ours to delete")
    kept[3].write_text("a regular file, not a socket")

    env = python_env(BACKENDS_RUNTIME_DIR=str(base))
    dry = run_reap("--parent", str(live.pid), "--uds", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert sorted(json.loads(dry.stdout)["uds"]) == sorted(map(str, expected))
    assert all(p.exists() for p in expected + kept)

    real = run_reap("--parent", str(live.pid), "--uds", "--json", env=env)
    assert real.returncode == 0, real.stderr
    assert sorted(json.loads(real.stdout)["uds"]) == sorted(map(str, expected))
    assert not any(p.exists() for p in expected)
    assert all(p.exists() for p in kept)


# --- API details -------------------------------------------------------------------------


def test_descendants_can_stop_at_processes_that_are_not_ours(actor_script, spawned):
    # me -> foreign outer -> ours: an xdist controller must leave it to the worker.
    outer, (outer_pid, inner_pid) = start_actor(actor_script, "-", "wait", "backends[reaptest-inner]")
    spawned.append(outer)
    direct, (direct_pid,) = start_actor(actor_script, "backends[reaptest-direct]", "wait")
    spawned.append(direct)
    me = os.getpid()
    table = reap.process_table()
    assert reap.is_ours(table[inner_pid]) and reap.is_ours(table[direct_pid]) and not reap.is_ours(table[outer_pid])
    stopping = reap.find_descendants(me, table, through_foreign=False)
    assert direct_pid in stopping and inner_pid not in stopping
    # Through foreign processes (the default), ours below them are found; the foreign one never is.
    through = reap.find_descendants(me, table)
    assert {direct_pid, inner_pid} <= set(through) and outer_pid not in through


def test_child_module_marker_and_comm_identify_ours(spawned):
    # An exec'd child that has not retitled yet: recognised by -m backends._child.
    fake = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", "-m", "backends._child"],
        stdin=subprocess.PIPE,
    )
    spawned.append(fake)
    info = reap.process_table()[fake.pid]
    assert reap.is_ours(info)
    assert not reap.is_ours(msgspec.structs.replace(info, argv=info.argv[:2]))
    assert reap.is_ours(msgspec.structs.replace(info, argv=(), comm="backends[worke"))


def test_reap_report_round_trips_through_json(actor_script, spawned):
    proc, (pid,) = start_actor(actor_script, "backends[reaptest-rt]", "wait")
    spawned.append(proc)
    report = reap.reap([pid], grace=5)
    assert [p.outcome for p in report.processes] == ["exited"]
    assert proc.wait(timeout=5) != 0
    decoded = msgspec.json.decode(report.to_json(), type=reap.ReapReport)
    assert decoded == report
    assert set(json.loads(report.to_json())) == REPORT_KEYS


def test_dump_install_writes_stacks_on_sigusr1(tmp_path):
    dumps = tmp_path / "dumps"
    script = (
        "import sys\n"
        "from backends import _dumps\n"
        "print(_dumps.install('backends[w x]'), flush=True)\n"
        "sys.stdin.readline()\n"
        "print('alive', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=python_env(BACKENDS_DUMP_DIR=str(dumps)),
    )
    try:
        path = Path(proc.stdout.readline().strip())
        assert path == dumps / f"backends_w_x_-{proc.pid}.txt"
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: "Current thread" in path.read_text(), what="the stack dump")
        assert "<module>" in path.read_text()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "alive\n"  # the dump did not kill it
    finally:
        kill_tree(proc.pid)
        proc.wait(timeout=5)
        proc.stdin.close()
        proc.stdout.close()


def test_dump_install_is_a_no_op_without_the_variable(monkeypatch):
    from backends import _dumps

    monkeypatch.delenv("BACKENDS_DUMP_DIR", raising=False)
    assert _dumps.install("pytest") is None
