"""The cffi group: prctl-based process hygiene, exercised in processes of their own.

Each scenario runs in a fresh interpreter so the pytest process never becomes
a subreaper or gets a parent-death signal because of these tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import trio

from backends import hygiene
from tests.backends._harness import REPO, alive, trio_test, wait_gone

needs_cffi = pytest.mark.skipif(
    hygiene.unavailable() is not None, reason=f"hygiene unavailable: {hygiene.unavailable()}"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=20,
        env=_env(),
        cwd=REPO,
        **kwargs,
        check=False,
    )


def test_without_cffi_every_call_is_a_cheap_no_op():
    result = _python(
        """
        import sys
        sys.modules["cffi"] = None  # as if the group were not installed
        from backends import hygiene
        print(hygiene.unavailable())
        print(hygiene.apply_root(), hygiene.apply_child(), hygiene.reap_adopted())
        """
    )
    assert result.returncode == 0, result.stderr
    reason, calls = result.stdout.strip().splitlines()
    assert "cffi" in reason
    assert calls == "False False []"


@needs_cffi
def test_apply_child_kills_itself_when_the_parent_is_already_gone():
    # The expected parent is not our parent: the death happened before the request.
    result = _python("from backends import hygiene; hygiene.apply_child(parent_pid=1); print('survived')")
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stdout, result.stderr)
    assert "survived" not in result.stdout


_STUCK_CHILD = """
import os, sys, time
from backends import hygiene
assert hygiene.apply_child(parent_pid=int(sys.argv[1]))
print(os.getpid(), flush=True)
while True:
    time.sleep(0.05)  # never checks on its parent
"""

_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(__import__("os").getpid())])
time.sleep(3600)
"""


@needs_cffi
@trio_test(timeout=20)
async def test_pdeathsig_takes_a_stuck_child_down_with_its_parent():
    parent = await trio.lowlevel.open_process(
        [sys.executable, "-c", _PARENT, _STUCK_CHILD],
        stdout=subprocess.PIPE,
        env=_env(),
        cwd=REPO,
        start_new_session=True,
    )
    child = None
    try:
        with trio.fail_after(10):
            line = b""
            while not line.endswith(b"\n"):
                line += await parent.stdout.receive_some(64)
        child = int(line)
        assert alive(child)
        parent.kill()
        await parent.wait()
        assert await wait_gone([child], within=3) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)
        await parent.stdout.aclose()


_GRANDCHILD = """
import os, setproctitle, time
setproctitle.setproctitle("backends[adopted]")
setproctitle.setthreadtitle("backends[adopted]")
first = os.getppid()
print(os.getpid(), flush=True)
deadline = time.monotonic() + 10
while os.getppid() == first and time.monotonic() < deadline:
    time.sleep(0.01)  # exit only once re-parented
"""

_MIDDLE = """
import subprocess, sys
g = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
print(g.stdout.readline().strip(), flush=True)
# exit without waiting: the grandchild is orphaned
"""

_ROOT = """
import json, os, subprocess, sys, time
from backends import _proc, hygiene
assert hygiene.apply_root()

def state(pid):
    found = _proc.stat(pid)
    return found[0] if found is not None else "gone"

def wait_zombie(pid):
    deadline = time.monotonic() + 10
    while state(pid) != "Z":
        assert time.monotonic() < deadline, state(pid)
        time.sleep(0.01)

m = subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], capture_output=True, text=True)
adopted = int(m.stdout.split()[0])
wait_zombie(adopted)
own = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])  # untitled, ours to wait for
wait_zombie(own.pid)
reaped = hygiene.reap_adopted()
print(json.dumps({"adopted": adopted, "reaped": reaped, "own_code": own.wait(),
                  "again": hygiene.reap_adopted()}))
"""


@needs_cffi
def test_subreaper_adopts_orphans_and_reap_adopted_collects_only_ours():
    result = subprocess.run(
        [sys.executable, "-c", _ROOT, _MIDDLE, _GRANDCHILD],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(),
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # waitpid succeeded on it, so the orphan had been re-parented to the root.
    assert report["reaped"] == [report["adopted"]]
    # The untitled child's exit status was left for its owner.
    assert report["own_code"] == 3
    assert report["again"] == []
