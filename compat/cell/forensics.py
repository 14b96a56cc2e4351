"""What kind of hang a timed-out cell is in, found from inside the cell before it is killed.

Stdlib only (it runs in any target's environment), from /proc alone: every
thread's system call (``/proc/<pid>/task/<tid>/syscall``), kernel wait
channel, state and CPU time, the descriptors a blocked call is on, and the
signals a process ignores. No ptrace, no extra capability, no tool in the
image: a stack sampler would need ptrace rights the cell does not grant.

The class of the pytest process, in the order they are tried:

- ``waiting-for-child``: its main thread is in ``wait4``/``waitid``; the
  child it waits for is named and classified in turn;
- ``blocked-syscall``: its main thread is in a call on a descriptor (a
  ``write`` to a full pipe, a ``read``, a ``connect``...), named with the
  descriptor's target; also a sleep of a process that ignores SIGINT;
- otherwise one SIGINT is sent and watched for ``PROBE_S``: it reacts
  (exits, prints ``KeyboardInterrupt``, its test ends) -> ``interruptible-wait``
  when no trio loop runs in it (a plain sleep or wait that an interrupt ends);
  nothing happens -> ``sigint-starved``, naming the thread that burns CPU
  (the one holding the GIL, a sub-interpreter's among them) when there is one.
  A process whose task tree came back with tasks runs a trio loop that still
  turns: ``await-hang`` however slowly its KeyboardInterrupt unwinds;
- ``unknown``, with what was tried, when /proc says nothing usable.

The probe goes last: it is the only step that changes the cell, and the
runner stops the test (or kills the cell) right after anyway.
"""

from __future__ import annotations

import os
import platform
import signal
import time
from pathlib import Path
from typing import Any

from . import protocol as P

PROBE_S = 3.0
SAMPLE_S = 0.5
BUSY_SHARE = 0.5  # of one CPU over the sample: that thread holds the GIL, or spins
CHILD_DEPTH = 3

SYSCALLS = {
    "x86_64": {
        0: "read", 1: "write", 7: "poll", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev", 23: "select",
        34: "pause", 35: "nanosleep", 42: "connect", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
        47: "recvmsg", 61: "wait4", 73: "flock", 130: "rt_sigsuspend", 202: "futex", 230: "clock_nanosleep",
        232: "epoll_wait", 247: "waitid", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait", 288: "accept4",
        441: "epoll_pwait2",
    },
    "aarch64": {
        22: "epoll_pwait", 32: "flock", 63: "read", 64: "write", 65: "readv", 66: "writev", 67: "pread64",
        68: "pwrite64", 72: "pselect6", 73: "ppoll", 95: "waitid", 98: "futex", 101: "nanosleep",
        115: "clock_nanosleep", 133: "rt_sigsuspend", 202: "accept", 203: "connect", 206: "sendto",
        207: "recvfrom", 211: "sendmsg", 212: "recvmsg", 242: "accept4", 260: "wait4", 441: "epoll_pwait2",
    },
}  # fmt: skip
CHILD_WAITS = frozenset({"wait4", "waitid"})
SLEEPS = frozenset({"clock_nanosleep", "nanosleep", "pause", "rt_sigsuspend"})
FD_CALLS = frozenset(
    {"read", "write", "readv", "writev", "pread64", "pwrite64", "recvfrom", "sendto", "recvmsg", "sendmsg"}
    | {"accept", "accept4", "connect", "flock"}
)
P_PID = 1  # waitid's idtype for one pid


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def thread(pid: int, tid: int) -> dict[str, Any]:
    """One thread as /proc shows it: name, state, wait channel, system call and its arguments, CPU ticks."""
    base = Path(f"/proc/{pid}/task/{tid}")
    info: dict[str, Any] = {"tid": tid, "name": _read(base / "comm") or "?"}
    stat = _read(base / "stat")
    if stat:
        fields = stat[stat.rindex(")") + 2 :].split()
        info["state"] = fields[0]
        info["cpu_ticks"] = int(fields[11]) + int(fields[12])
    wchan = _read(base / "wchan")
    if wchan and wchan != "0":
        info["wchan"] = wchan
    raw = _read(base / "syscall")
    if raw and raw not in ("running",) and not raw.startswith("-1"):
        nr, *args = raw.split()
        table = SYSCALLS.get(platform.machine(), {})
        info["syscall"] = table.get(int(nr), f"syscall {nr}")
        info["args"] = [int(a, 16) for a in args[:6]]
    elif raw:
        info["syscall"] = "running" if raw == "running" else "none"
    return info


def threads(pid: int) -> list[dict[str, Any]]:
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []
    return [thread(pid, tid) for tid in tids]


def sample(pids: list[int], seconds: float = SAMPLE_S) -> dict[int, list[dict[str, Any]]]:
    """Every thread of ``pids``, with the share of one CPU each used over ``seconds``."""
    before = {pid: {t["tid"]: t.get("cpu_ticks", 0) for t in threads(pid)} for pid in pids}
    time.sleep(seconds)
    hz = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        now = threads(pid)
        for t in now:
            used = t.get("cpu_ticks", 0) - before.get(pid, {}).get(t["tid"], t.get("cpu_ticks", 0))
            t["cpu_share"] = round(used / hz / seconds, 2)
        found[pid] = now
    return found


def fd_target(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return "?"


def _status(pid: int) -> dict[str, str]:
    text = _read(Path(f"/proc/{pid}/status")) or ""
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def ignores(pid: int, signum: int) -> bool:
    mask = _status(pid).get("SigIgn", "0").strip()
    return bool(int(mask, 16) >> (signum - 1) & 1)


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace") or "?"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read(entry / "stat")
            if stat and int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _main(pid: int, snapshot: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    return next((t for t in snapshot.get(pid, []) if t["tid"] == pid), {})


def _busy(pid: int, snapshot: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [t for t in snapshot.get(pid, []) if t.get("cpu_share", 0) >= BUSY_SHARE]


def _call(main: dict[str, Any]) -> str:
    return main.get("syscall") or main.get("wchan") or "an unknown state"


def classify(
    pid: int,
    snapshot: dict[int, list[dict[str, Any]]],
    *,
    probe: bool,
    output: Path | None = None,
    depth: int = 0,
    trio: frozenset[int] | set[int] = frozenset(),
) -> dict[str, Any]:
    """The hang class of ``pid`` (see the module's docstring), with the evidence."""
    main = _main(pid, snapshot)
    call, args = main.get("syscall"), main.get("args", [])
    found: dict[str, Any] = {"pid": pid, "cmdline": cmdline(pid)[:200], "main_thread": main}
    if not main:
        return {**found, "class": "unknown", "detail": "the process is gone or /proc/<pid> is unreadable"}
    if call in CHILD_WAITS or main.get("wchan") == "do_wait":
        return _waiting_for_child(found, snapshot, probe=probe, depth=depth, trio=trio)
    if call in FD_CALLS and args:
        fd = args[0]
        return {
            **found,
            "class": "blocked-syscall",
            "detail": f"main thread in {call}() on fd {fd} ({fd_target(pid, fd)})",
        }
    if call in SLEEPS and ignores(pid, signal.SIGINT):
        return {**found, "class": "blocked-syscall", "detail": f"main thread in {call}(), and it ignores SIGINT"}
    blocked = [c for c in children(pid) if thread(c, c).get("syscall") in FD_CALLS]
    if blocked and depth < CHILD_DEPTH:
        # Idle itself, but a child it waits on (a fork writing into a full pipe) cannot go on.
        child = blocked[0]
        snapshot.update(sample([child], 0.2))
        detail = f"main thread in {_call(main)} while its child {child} ({cmdline(child)[:120]}) is blocked"
        child_class = classify(child, snapshot, probe=False, depth=depth + 1)
        return {**found, "class": "waiting-for-child", "detail": detail, "child": child_class}
    if not probe:
        return {**found, "class": "unknown", "detail": f"main thread in {_call(main)}; no SIGINT probe was made"}
    return _probed(found, snapshot, output=output, trio=trio)


def _waiting_for_child(
    found: dict[str, Any],
    snapshot: dict[int, list[dict[str, Any]]],
    *,
    probe: bool,
    depth: int,
    trio: frozenset[int] | set[int],
) -> dict[str, Any]:
    """A main thread in wait4/waitid: the child it waits for, classified in turn."""
    pid, main = found["pid"], found["main_thread"]
    call, args = main.get("syscall"), main.get("args", [])
    wanted = -1
    if call == "wait4" and args:
        wanted = _signed(args[0])
    elif call == "waitid" and args and args[0] == P_PID:
        wanted = args[1]
    kids = [wanted] if wanted > 0 else children(pid)
    found.update({"class": "waiting-for-child", "detail": f"main thread in {call or 'do_wait'}"})
    if kids:
        child = kids[0]
        found["detail"] += f" for child {child} ({cmdline(child)[:120]})"
        if depth < CHILD_DEPTH:
            if child not in snapshot:
                snapshot.update(sample([child], 0.2))
            found["child"] = classify(child, snapshot, probe=probe, depth=depth + 1, trio=trio)
    return found


def _probed(
    found: dict[str, Any],
    snapshot: dict[int, list[dict[str, Any]]],
    *,
    output: Path | None,
    trio: frozenset[int] | set[int],
) -> dict[str, Any]:
    """The class one SIGINT decides: answered (in trio or not), or starved."""
    pid, main = found["pid"], found["main_thread"]
    reaction = sigint_probe(pid, output, output.with_name(P.EVENTS) if output is not None else None)
    busy = [t for t in _busy(pid, snapshot) if t["tid"] != pid]
    if pid in trio:
        # Its task tree came back: the loop runs Python and turns, so it is not starved; a SIGINT
        # that shows nothing yet is a KeyboardInterrupt delivered at a checkpoint, unwinding slowly.
        answer = (
            f"it answered SIGINT: {reaction}"
            if reaction
            else (f"SIGINT showed nothing within {PROBE_S:g} s (its cancellation may take longer)")
        )
        return {
            **found,
            "class": "await-hang",
            "detail": f"a trio loop in {_call(main)}, its task tree answered; {answer}",
        }
    if reaction:
        detail = f"main thread in {_call(main)}, no trio loop; it answered SIGINT: {reaction}"
        if busy:
            detail += f"; meanwhile busy: {_names(busy)}"
        return {**found, "class": "interruptible-wait", "detail": detail, "busy_threads": busy}
    detail = f"SIGINT was delivered and nothing happened within {PROBE_S:g} s; main thread in {_call(main)}"
    if busy:
        detail += f"; holding the GIL: {_names(busy)}"
    return {**found, "class": "sigint-starved", "detail": detail, "busy_threads": busy}


def _names(busy: list[dict[str, Any]]) -> str:
    return ", ".join(f"thread {t['tid']} {t['name']!r} ({t['cpu_share']:.0%} CPU)" for t in busy)


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _grew_with(path: Path | None, offset: int, needles: tuple[bytes, ...]) -> bool:
    if path is None or _size(path) <= offset:
        return False
    with open(path, "rb") as f:
        f.seek(offset)
        added = f.read()
    return any(n in added for n in needles)


def sigint_probe(pid: int, output: Path | None, events: Path | None = None) -> str:
    """Send one SIGINT and watch (bounded) for a reaction: the process exits, says KeyboardInterrupt,
    or its test ends (a test's result or pytest's finish in the cell's events: an interrupt a test
    turned into a failure, as trio's ExceptionGroup does, leaves no trace on the terminal).

    What happened, or "" for nothing.
    """
    sizes = _size(output), _size(events)
    try:
        os.kill(pid, signal.SIGINT)
    except OSError as exc:
        return f"could not be signalled ({exc.strerror})"
    deadline = time.monotonic() + PROBE_S
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not Path(f"/proc/{pid}").exists() or _status(pid).get("State", "").startswith("Z"):
            return "it exited"
        if _grew_with(output, sizes[0], (b"KeyboardInterrupt",)):
            return "it raised KeyboardInterrupt"
        if _grew_with(events, sizes[1], (b'"event": "result"', b'"event": "finish"')):
            return "its test ended"
    # A main thread that merely wakes (a GIL wait times out every 5 ms) has not answered.
    return ""


def pytest_process(pids: list[int]) -> int | None:
    """The cell's pytest among the cell's processes: the oldest running ``-m pytest`` (a fork of it is younger)."""
    candidates = [pid for pid in pids if "-m pytest" in cmdline(pid)]
    return min(candidates) if candidates else None


def investigate(
    pids: list[int], *, output: Path | None, trio: set[int] | frozenset[int] = frozenset()
) -> dict[str, Any]:
    """Snapshot every process, then classify the pytest process (probing it last); bounded."""
    started = time.monotonic()
    snapshot = sample(pids)
    target = pytest_process(pids)
    report: dict[str, Any] = {
        "processes": {str(pid): {"cmdline": cmdline(pid)[:200], "threads": snapshot.get(pid, [])} for pid in pids}
    }
    if target is None:
        report["class"] = {"class": "unknown", "detail": "no pytest process was found in the cell"}
    else:
        if target not in snapshot:
            snapshot.update(sample([target], 0.2))
        report["class"] = classify(target, snapshot, probe=True, output=output, trio=trio)
    report["seconds"] = round(time.monotonic() - started, 2)
    return report
