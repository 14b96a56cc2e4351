"""Every thread of every interpreter of a hung cell's Python processes, read from outside them.

No handler, no signal, no help from the target: the runner (root on the host,
or the cells' own user for local cells) reads each process's memory with two
well-kept tools, chosen by what each does on our images (measured: README,
"Hangs"):

- ``pystack remote PID``: every thread's Python stack in every interpreter,
  sub-interpreters included ("In interpreter 1"), for 3.13 and 3.14. It cannot
  open the image's ``/usr/bin/python3.X`` by the host's path, so it names no
  GIL holder and no native frames (the images' CPython is stripped anyway);
- ``py-spy dump --pid PID``: each thread's name, whether it is active and
  which one holds the GIL (only the holder's frame of a sub-interpreter).

Both are merged by thread id into ``stacks.json`` (and their text kept in
``stacks.txt``). Where ptrace is refused (Yama's ptrace_scope, another user's
process), that is said instead, and the /proc evidence of the forensics
step stands alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ..cell import protocol as P
from ..cell import session as cell_session
from ..results.schema import Frame, InterpreterStack, ProcessStacks, Stacks, ThreadStack

TOOL_TIMEOUT_S = 15.0
MAX_PROCESSES = 16
YAMA = Path("/proc/sys/kernel/yama/ptrace_scope")
_PYSTACK_THREAD = re.compile(r"^Traceback for thread (\d+)(?: \[[^\]]*\])? \(most recent call last\):")
_PYSTACK_INTERP = re.compile(r"^\s+In (?:the main interpreter|interpreter (\d+))")
_PYSTACK_FRAME = re.compile(r'^\s+\(Python\) File "(?P<file>.*)", line (?P<line>\d+), in (?P<function>.*)$')
_PYSPY_THREAD = re.compile(r'^Thread (?P<tid>0x[0-9a-fA-F]+|\d+) \((?P<state>[^)]*)\)(?:: "(?P<name>.*)")?')
_PYSPY_FRAME = re.compile(r"^\s+(?P<function>\S.*?) \((?P<file>.*):(?P<line>\d+)\)$")


def tool(name: str) -> str | None:
    """The tool installed beside this compat (its environment's scripts), or on PATH."""
    here = Path(sysconfig.get_path("scripts")) / name
    if here.exists():
        return str(here)
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else None


def ptrace_refusal(pid: int | None = None) -> str:
    """Why this process may not read ``pid`` (any process of ours when None); "" when it may."""
    try:
        scope = int(YAMA.read_text().strip())
    except (OSError, ValueError):
        scope = 0  # no Yama: the classic rule, same user or root
    if scope >= 3:
        return "ptrace is disabled on this host (kernel.yama.ptrace_scope = 3)"
    if os.geteuid() == 0:
        return ""
    if scope >= 2:
        return "only root may ptrace here (kernel.yama.ptrace_scope = 2)"
    if pid is not None:
        try:
            owner = Path(f"/proc/{pid}").stat().st_uid
        except OSError:
            return ""
        if owner != os.geteuid():
            return f"process {pid} belongs to uid {owner}; reading it needs root"
    return ""


def collect(pids: Iterable[int], into: Path) -> Stacks:
    """Stacks of ``pids`` (host pids), written to ``into``/stacks.json and stacks.txt."""
    started = time.monotonic()
    pystack, pyspy = tool("pystack"), tool("py-spy")
    found, texts = [], []
    # The oldest first (pytest, then what it started): a cell of hundreds of processes (a fork
    # bomb, a wide actor tree) would otherwise take minutes to read.
    pythons = sorted(p for p in pids if _is_python(p))
    skipped = max(0, len(pythons) - MAX_PROCESSES)
    for pid in pythons[:MAX_PROCESSES]:
        refused = ptrace_refusal(pid)
        if refused:
            found.append(ProcessStacks(pid=cell_session.inner_pid(pid), cmdline=_cmdline(pid), problem=refused))
            continue
        stack_text = _run([pystack, "remote", "--no-color", str(pid)]) if pystack else ""
        spy_text = _run([pyspy, "dump", "--pid", str(pid)]) if pyspy else ""
        inner = cell_session.inner_pid(pid)
        head = f"{inner} (host pid {pid})" if inner != pid else str(pid)
        texts.append(f"=== {head}: {_cmdline(pid)}\n--- pystack remote\n{stack_text}\n--- py-spy dump\n{spy_text}\n")
        # Numbered as the cell numbers it, like the threads both tools list, the dumps and the forensics.
        found.append(merge(cell_session.inner_pid(pid), _cmdline(pid), stack_text, spy_text, _thread_names(pid)))
    missing = [name for name, path in (("pystack", pystack), ("py-spy", pyspy)) if path is None]
    problems = [f"not installed: {', '.join(missing)}"] if missing else []
    if skipped:
        problems.append(f"{skipped} more Python processes not read (at most {MAX_PROCESSES})")
    stacks = Stacks(
        processes=tuple(found),
        problem="; ".join(problems),
        seconds=round(time.monotonic() - started, 2),
    )
    into.mkdir(parents=True, exist_ok=True)
    (into / P.STACKS).write_bytes(msgspec.json.format(msgspec.json.encode(stacks)))
    (into / P.STACKS_TEXT).write_text("\n".join(texts))
    return stacks


def _run(argv: list[str | None]) -> str:
    try:
        proc = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(not read: {exc})"
    return proc.stdout + proc.stderr


def _is_python(pid: int) -> bool:
    """A Python process of the cell's (not its init, a shell, a `timeout`, nor compat's own entry)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    line = _cmdline(pid)
    first = Path(line.split(" ", 1)[0]).name if line else ""
    return (Path(exe).name.startswith("python") or first.startswith("python")) and P.ENTRY_MODULE not in line


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    # One line: a `python -c` program's newlines would break the text's headers.
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace").replace("\n", "\\n")


def _thread_names(pid: int) -> dict[int, str]:
    """Thread id (as the process's own PID namespace numbers it, like both tools) -> the kernel's name.

    For the threads py-spy names not (a sub-interpreter's): Python 3.14 gives OS threads their names.
    """
    names = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except (OSError, ValueError):
            continue
        nspid = status.get("NSpid", task.name).split()
        if nspid:
            names[int(nspid[-1])] = status.get("Name", "").strip()
    return names


def merge(pid: int, cmdline: str, pystack: str, pyspy: str, names: dict[int, str] | None = None) -> ProcessStacks:
    """One process's threads: pystack's frames per interpreter, with py-spy's names, states and GIL holder
    (the kernel's name for a thread py-spy does not name)."""
    spy = _parse_pyspy(pyspy)
    threads = []
    for tid, interpreters in _parse_pystack(pystack):
        name, state, _ = spy.get(tid, ("", "", ()))
        threads.append(
            ThreadStack(
                tid=tid,
                name=name or (names or {}).get(tid, ""),
                gil="gil" in state,
                active="active" in state,
                interpreters=tuple(InterpreterStack(interpreter=i, frames=tuple(fs)) for i, fs in interpreters),
            )
        )
    # py-spy alone (pystack absent or failed): its frames, for the main interpreter.
    known = {t.tid for t in threads}
    for tid, (name, state, frames) in spy.items():
        if tid not in known:
            threads.append(
                ThreadStack(
                    tid=tid,
                    name=name,
                    gil="gil" in state,
                    active="active" in state,
                    interpreters=(InterpreterStack(interpreter=0, frames=tuple(frames)),),
                )
            )
    problem = "" if threads else _first_line(pystack) or _first_line(pyspy) or "no Python thread was read"
    return ProcessStacks(pid=pid, cmdline=cmdline[:300], threads=tuple(threads), problem=problem)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and "Cannot open ELF file" not in line]
    return lines[0][:300] if lines else ""


def _parse_pystack(text: str) -> list[tuple[int, list[tuple[int, list[Frame]]]]]:
    """(tid, [(interpreter, frames innermost last)]) per thread."""
    threads: list[tuple[int, list[tuple[int, list[Frame]]]]] = []
    for line in text.splitlines():
        if m := _PYSTACK_THREAD.match(line):
            threads.append((int(m.group(1)), [(0, [])]))
        elif threads and (m := _PYSTACK_INTERP.match(line)):
            interpreter = int(m.group(1) or 0)
            sections = threads[-1][1]
            if sections == [(0, [])]:
                sections.clear()
            sections.append((interpreter, []))
        elif threads and (m := _PYSTACK_FRAME.match(line)):
            threads[-1][1][-1][1].append(Frame(function=m["function"], file=m["file"], line=int(m["line"])))
    return threads


def _parse_pyspy(text: str) -> dict[int, tuple[str, str, list[Frame]]]:
    """tid -> (name, state, frames innermost last)."""
    found: dict[int, tuple[str, str, list[Frame]]] = {}
    current: list[Frame] | None = None
    for line in text.splitlines():
        if m := _PYSPY_THREAD.match(line):
            tid = int(m["tid"], 16) if m["tid"].startswith("0x") else int(m["tid"])
            current = []
            found[tid] = (m["name"] or "", m["state"], current)
        elif current is not None and (m := _PYSPY_FRAME.match(line)):
            current.insert(0, Frame(function=m["function"], file=m["file"], line=int(m["line"])))
    return found
