"""Shared helpers for the reaper and plugin tests.

pytester is enabled in the test modules that use it (``pytest_plugins`` in a
conftest below the rootdir is a collection error in pytest 9).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from backends import _proc

# A process that plays an actor: retitles itself (cmdline and comm), reports
# its pid (and its child's) on stdout, then waits for a signal.
#   actor.py TITLE MODE [CHILD_TITLE]
#   TITLE "-" keeps the interpreter's own title (not one of ours).
#   MODE: wait | stubborn (ignores SIGINT) | exit-when-orphaned
ACTOR = r"""
import os, signal, subprocess, sys, time
import setproctitle
title, mode = sys.argv[1], sys.argv[2]
if title != "-":
    setproctitle.setproctitle(title)
    setproctitle.setthreadtitle(title)
if mode == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
pids = [os.getpid()]
if len(sys.argv) > 3:
    child = subprocess.Popen([sys.executable, __file__, sys.argv[3], "wait"],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    pids.append(int(child.stdout.readline()))
print(*pids, flush=True)
if mode == "exit-when-orphaned":
    parent = os.getppid()
    deadline = time.monotonic() + 30
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.01)
    sys.exit(0)
while True:
    signal.pause()
"""

# Starts actors given as "TITLE:MODE[:CHILD_TITLE]", prints their pids, exits
# without waiting: the actors are orphaned for real.
ORPHANER = r"""
import subprocess, sys
actor = sys.argv[1]
out = []
for spec in sys.argv[2:]:
    p = subprocess.Popen([sys.executable, actor, *spec.split(":")],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out.append(p.stdout.readline().decode().strip())
print("|".join(out), flush=True)
"""


@pytest.fixture
def actor_script(tmp_path) -> str:
    path = tmp_path / "actor.py"
    path.write_text(ACTOR)
    (tmp_path / "orphaner.py").write_text(ORPHANER)
    return str(path)


def kill_tree(pid: int) -> None:
    """SIGKILL pid and everything below it; waits for its own children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen]]:
    """Popen objects whose whole trees are killed and awaited at teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        kill_tree(proc.pid)
        proc.wait(timeout=5)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def start_actor(script: str, *args: str) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return proc, [int(x) for x in proc.stdout.readline().split()]


def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def state(pid: int) -> str | None:
    """The /proc state letter, or None when the pid is gone."""
    found = _proc.stat(pid)
    return found[0] if found is not None else None


def gone(pid: int) -> bool:
    return state(pid) in (None, "Z")


def python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BACKENDS_DUMP_DIR", None)
    return env | extra
