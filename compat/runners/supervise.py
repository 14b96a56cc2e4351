"""Watching a running cell: the one routine both runners use, over a small process interface.

Within the cell's wall-clock bound it waits, and it enforces the per-test
bound from outside the test process (never pytest-timeout inside a target,
which breaks trio under fork backends): a test still running past it gets
its evidence (every thread of every interpreter, read from outside; the
processes' own dumps and task trees; the hang's class from /proc) and is
stopped: ``stop-test`` kills its process tree and the cell's entry resumes
the tests not run yet in a new pytest process. When the cell's own bound
expires, the same evidence is taken and the cell is killed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..cell import protocol as P
from ..cell import session as cell_session
from ..matrix import Matrix
from ..results.probe import running_since, running_test
from . import stacks
from .base import CellRun, collect_dumps

SLICE_S = 1.0  # how often the per-test bound is looked at; a test's bound is checked to within this
DUMP_BOUND_S = 30
STOP_BOUND_S = 30
# The hang forensics step's hard bound (it needs about 5 s: trees, a CPU sample, one SIGINT probe).
FORENSICS_BOUND_S = 20
KILL_WAIT_S = 10.0
PIDS_SLACK = 2


class CellProcess(Protocol):
    """A running cell as the supervision sees it: a container, or a local process tree."""

    def wait(self, timeout: float) -> int | None:
        """The cell's exit code, or None while it runs after ``timeout`` seconds."""
        ...

    def pids(self) -> Sequence[int]:
        """The cell's processes as this host sees them (their stacks are read from here)."""
        ...

    def entry(self, *args: str, bound: float) -> tuple[int, str]:
        """``python -m compat.cell.entry ARGS`` inside the cell, killed after ``bound`` seconds.

        ``{out}`` in an argument is the cell's output directory as the cell sees it; the local
        runner adds the cell's session, the scope the command acts in.
        """
        ...

    def kill(self) -> None: ...

    def out_of_memory(self) -> bool:
        """The cell was killed for its memory limit."""
        ...

    def pids_usage(self) -> tuple[int, int] | None:
        """(processes and threads, the pids limit) of the cell, where it has a limit."""
        ...


def supervise(proc: CellProcess, run: CellRun, matrix: Matrix, stop: threading.Event) -> None:
    """Wait for the cell within its bounds; on a test past the per-test bound, stop that test and
    let the cell go on; at the cell's bound, investigate and kill."""
    deadline = time.monotonic() + matrix.timeouts.per_cell
    per_test = matrix.timeouts.per_test
    stopped: set[str] = set()
    while (remaining := deadline - time.monotonic()) > 0:
        code = proc.wait(min(remaining, SLICE_S))
        if stop.is_set():
            run.interrupted = True
            return
        if code is not None:
            run.exit_code = code
            if proc.out_of_memory():
                run.failure = f"killed: memory limit {matrix.limits.memory} reached"
            return
        current = running_since(run.out)
        if current is None or current[0] in stopped or time.time() - current[1] <= per_test:
            continue
        nodeid = current[0]
        stopped.add(nodeid)
        hang = next_hang(run.out)
        # Said before the probe, so that whatever the probe makes pytest do, the cell goes on after it.
        cell_session.mark_stopped(run.out, nodeid, per_test, hang)
        investigate(proc, run.out, hang, nodeid, "per-test")
        code, _ = proc.entry("stop-test", "{out}", bound=STOP_BOUND_S)
        if code != 0:
            # Nothing could be started inside (its pids limit, say): the host stops the test itself.
            stop_from_outside(proc, run.out)
    run.timed_out = True
    run.running = running_test(run.out)
    investigate(proc, run.out, next_hang(run.out), run.running or "", "per-cell")
    proc.kill()
    run.exit_code = proc.wait(KILL_WAIT_S)


def next_hang(out: Path) -> str:
    """The next hang directory's name, relative to the cell's: hangs/01, hangs/02, ..."""
    root = out / P.HANGS
    taken = {p.name for p in root.iterdir()} if root.is_dir() else set()
    n = 1
    while f"{n:02d}" in taken:
        n += 1
    made = root / f"{n:02d}"
    made.mkdir(parents=True)
    made.chmod(0o777)  # the cell's user writes its forensics into it, whoever runs the host
    return f"{P.HANGS}/{n:02d}"


def investigate(proc: CellProcess, out: Path, hang: str, nodeid: str, bound: str) -> None:
    """The evidence of a hang, least disturbing first: stacks read from outside, the processes' own
    dumps (SIGUSR1) and task trees (SIGUSR2), then the class from /proc with its one SIGINT probe."""
    stacks.collect(proc.pids(), out / hang)
    code, output = proc.entry("dump", bound=DUMP_BOUND_S)
    if code == 0:
        collect_dumps(output, out, into=out / hang)
    code, output = proc.entry("forensics", "{out}", hang, nodeid, bound, bound=FORENSICS_BOUND_S)
    if not (out / hang / P.FORENSICS).exists():
        # The hang stays on the record, with the stacks above, and why: the step could not run.
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        found: P.Forensics = {
            "class": _failed_step(proc, f"the forensics step failed (exit {code}): {last}"[:500]),
            "nodeid": nodeid, "bound": bound, "seconds": None, "processes": {},
            "task_trees": {"asked": [], "answered": []},
        }  # fmt: skip
        (out / hang / P.FORENSICS).write_text(json.dumps(found, indent=1))


def _failed_step(proc: CellProcess, why: str) -> P.HangFound:
    """A cell nothing can be started in: its pids limit reached (a fork bomb, a runtime spawning
    without bound) is a class of its own; anything else stays unknown, with what failed."""
    usage = proc.pids_usage()
    # Within PIDS_SLACK of it: the failed command's own `timeout` wrapper may have taken the last one.
    if usage is not None and usage[0] + PIDS_SLACK >= usage[1]:
        return {
            "class": "pids-exhausted",
            "detail": f"the cell's {usage[0]} processes and threads are at its pids limit ({usage[1]}): "
            f"nothing more can start in it ({why})",
        }
    return {"class": "unknown", "detail": why}


def host_pid_of(pids: Sequence[int], inner: int) -> int | None:
    """This host's number for the cell's process ``inner`` (the last field of its NSpid line)."""
    for pid in pids:
        if cell_session.inner_pid(pid) == inner:
            return pid
    return None


def stop_from_outside(proc: CellProcess, out: Path) -> dict[str, object]:
    """``stop-test`` done from this host, on its numbers for the cell's processes."""
    return cell_session.stop_test(out, host_pid=lambda inner: host_pid_of(proc.pids(), inner))
