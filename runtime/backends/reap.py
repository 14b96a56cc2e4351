"""Find and remove what actors leak: processes, /dev/shm segments, socket files.

Processes are ours when their title (cmdline or /proc/<pid>/comm, which
survives into zombie state) starts with ``backends[``, or their cmdline runs
``-m backends._child`` (an exec'd child that died before retitling). Two ways
to pick roots:

- orphan mode: ours, and the parent is not ours (adopted by init or a
  subreaper) and is not a live root actor (one that owns a run directory);
- descendant mode (``--parent PID``): ours and below PID.

Each root is expanded to its whole subtree before any signal, so one pass
takes out a leaked tree, then SIGINT -> grace -> SIGKILL. The calling process
and its ancestors are never touched.

``backends-reap [--parent PID] [--grace S] [--shm] [--uds] [--dry-run] [--json]``
exits 0 when nothing needed SIGKILL, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import stat
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, NoReturn

import msgspec
import psutil

from . import _proc
from ._paths import (
    CHILD_MODULE,
    SHM_PREFIX,
    TITLE_PREFIX,
    parse_run_dir_name,
    parse_socket_name,
    runtime_base,
)

SHM_DIR = Path("/dev/shm")
POLL = 0.02
KILL_WAIT = 2.0

Outcome = Literal["exited", "killed", "zombie", "survived", "would-signal"]


class ProcInfo(msgspec.Struct, frozen=True):
    """One row of /proc, read once so every decision sees the same snapshot."""

    pid: int
    ppid: int
    state: str
    comm: str
    argv: tuple[str, ...]

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")

    @property
    def title(self) -> str:
        return self.argv[0] if self.argv else self.comm


class Reaped(msgspec.Struct, frozen=True):
    pid: int
    ppid: int
    title: str
    state: str
    outcome: Outcome


class ReapReport(msgspec.Struct):
    """The ``--json`` shape: what was found and what was done about it."""

    processes: list[Reaped] = msgspec.field(default_factory=list)
    signalled: int = 0
    escalated: int = 0
    shm: list[str] = msgspec.field(default_factory=list)
    uds: list[str] = msgspec.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.processes or self.shm or self.uds)

    def merge(self, other: ReapReport) -> None:
        self.processes += other.processes
        self.signalled += other.signalled
        self.escalated += other.escalated
        self.shm += other.shm
        self.uds += other.uds

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


# --- the process table -------------------------------------------------------


def _read_proc(pid: int) -> ProcInfo | None:
    base = f"/proc/{pid}"
    found = _proc.stat(pid)
    if found is None:
        return None
    state, ppid = found
    try:
        with open(f"{base}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"{base}/comm", "rb") as f:
            comm = f.read().decode(errors="replace").rstrip("\n")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    argv = tuple(a.decode(errors="replace") for a in cmdline.rstrip(b"\0").split(b"\0") if a)
    # setproctitle may pad the title with spaces inside one argv slot.
    if len(argv) == 1:
        argv = (argv[0].rstrip(),)
    return ProcInfo(pid=pid, ppid=ppid, state=state, comm=comm, argv=argv)


def process_table() -> dict[int, ProcInfo]:
    """Every process visible in /proc, keyed by pid."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (info := _read_proc(int(entry.name))):
            table[info.pid] = info
    return table


def is_ours(info: ProcInfo) -> bool:
    """Titled ``backends[...]`` (cmdline or comm), or running ``-m backends._child``."""
    if info.comm.startswith(TITLE_PREFIX):
        return True
    if info.argv and info.argv[0].startswith(TITLE_PREFIX):
        return True
    return CHILD_MODULE in info.argv[1:]


def protected_pids(table: dict[int, ProcInfo], pid: int | None = None) -> set[int]:
    """``pid`` (default: this process) and all its ancestors."""
    pid = os.getpid() if pid is None else pid
    protected = {0, 1}
    while pid not in protected:
        protected.add(pid)
        info = table.get(pid)
        if info is None:
            break
        pid = info.ppid
    return protected


def _children(table: dict[int, ProcInfo]) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for info in table.values():
        kids.setdefault(info.ppid, []).append(info.pid)
    return kids


def subtree(table: dict[int, ProcInfo], root: int) -> list[int]:
    """``root`` and all its descendants, parents before children."""
    kids = _children(table)
    order, queue, seen = [], [root], set()
    while queue:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        order.append(pid)
        queue.extend(sorted(kids.get(pid, ())))
    return order


def live_roots(base: Path | None = None) -> set[int]:
    """Pids that own a run directory under the runtime base and are alive."""
    base = runtime_base() if base is None else base
    try:
        entries = list(base.iterdir())
    except OSError:
        return set()
    roots = {parse_run_dir_name(e.name) for e in entries}
    return {pid for pid in roots if pid is not None and pid_alive(pid)}


def find_orphans(table: dict[int, ProcInfo] | None = None) -> list[int]:
    """Our processes whose parent is neither ours nor a live root actor."""
    table = process_table() if table is None else table
    protected = protected_pids(table)
    roots = live_roots()
    found = []
    for info in table.values():
        if info.pid in protected or not is_ours(info):
            continue
        parent = table.get(info.ppid)
        if parent is not None and (is_ours(parent) or info.ppid in roots):
            continue
        found.append(info.pid)
    return sorted(found)


def find_descendants(
    parent: int,
    table: dict[int, ProcInfo] | None = None,
    *,
    through_foreign: bool = True,
) -> list[int]:
    """Our processes below ``parent``.

    With ``through_foreign=False`` the search does not descend into processes
    that are not ours (an xdist controller must leave its live workers' actors
    to the workers).
    """
    table = process_table() if table is None else table
    kids = _children(table)
    found, queue = [], list(kids.get(parent, ()))
    while queue:
        pid = queue.pop(0)
        info = table[pid]
        if is_ours(info):
            found.append(pid)
        elif not through_foreign:
            continue
        queue.extend(kids.get(pid, ()))
    return sorted(found)


# --- the escalation ladder ---------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Running: present in /proc and not a zombie."""
    info = _read_proc(pid)
    return info is not None and not info.zombie


def _alive(procs: dict[int, psutil.Process]) -> dict[int, psutil.Process]:
    still = {}
    for pid, proc in procs.items():
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                still[pid] = proc
        except psutil.NoSuchProcess:
            pass
    return still


def _wait_gone(procs: dict[int, psutil.Process], timeout: float) -> dict[int, psutil.Process]:
    deadline = time.monotonic() + timeout
    remaining = _alive(procs)
    while remaining and time.monotonic() < deadline:
        time.sleep(POLL)
        remaining = _alive(remaining)
    return remaining


def _signal(procs: dict[int, psutil.Process], sig: signal.Signals) -> int:
    sent = 0
    for proc in procs.values():
        try:
            # psutil refuses when the pid was reused since we looked.
            proc.send_signal(sig)
            sent += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sent


def reap(
    roots: Iterable[int],
    *,
    grace: float = 3.0,
    dry_run: bool = False,
    table: dict[int, ProcInfo] | None = None,
) -> ReapReport:
    """SIGINT every process in the roots' subtrees, wait ``grace``, SIGKILL the rest."""
    table = process_table() if table is None else table
    targets = _targets(table, roots)
    report = ReapReport()
    if not targets:
        return report

    procs: dict[int, psutil.Process] = {}
    for pid, info in targets.items():
        if info.zombie:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            procs[pid] = psutil.Process(pid)

    def record(info: ProcInfo, outcome: Outcome) -> Reaped:
        return Reaped(info.pid, info.ppid, info.title, info.state, outcome)

    if dry_run:
        report.processes = [record(info, "zombie" if info.zombie else "would-signal") for info in targets.values()]
        return report

    report.signalled = _signal(procs, signal.SIGINT)
    stubborn = _wait_gone(procs, grace)
    report.escalated = _signal(stubborn, signal.SIGKILL)
    survivors = _wait_gone(stubborn, KILL_WAIT)

    for pid, info in targets.items():
        # A killed child of the caller stays a zombie until its Popen (or
        # whoever owns it) waits: collecting it here would steal that status.
        report.processes.append(record(info, _outcome(info, pid in stubborn, pid in survivors)))
    return report


def _targets(table: dict[int, ProcInfo], roots: Iterable[int]) -> dict[int, ProcInfo]:
    """Every process in the roots' subtrees that may be reaped."""
    protected = protected_pids(table)
    targets: dict[int, ProcInfo] = {}
    for root in roots:
        # A protected root's subtree holds the caller's siblings and cousins
        # (pid 1's holds everything): never expand it.
        if root in protected:
            continue
        for pid in subtree(table, root):
            if pid not in protected and pid in table:
                targets.setdefault(pid, table[pid])
    return targets


def _outcome(info: ProcInfo, stubborn: bool, survived: bool) -> Outcome:
    if info.zombie:
        return "zombie"
    if survived:
        return "survived"
    return "killed" if stubborn else "exited"


# --- /dev/shm ----------------------------------------------------------------


def _shm_in_use(directory: Path) -> set[str]:
    """Paths under ``directory`` that any readable process maps or holds open."""
    prefix = f"{directory}/"
    used: set[str] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/maps", encoding="utf-8", errors="replace") as f:
                for line in f:
                    at = line.find(prefix)
                    if at >= 0:
                        used.add(line[at:].rstrip("\n").removesuffix(" (deleted)"))
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                target = os.readlink(fd.path)
                if target.startswith(prefix):
                    used.add(target)
        except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            # Unreadable processes belong to other users, who cannot open our 0600 segments.
            continue
    return used


def find_orphan_shm(directory: Path = SHM_DIR, prefix: str = SHM_PREFIX) -> list[Path]:
    """``<directory>/<prefix>*`` owned by this euid that no process maps or holds open."""
    euid = os.geteuid()
    candidates = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == euid:
            candidates.append(Path(entry.path))
    if not candidates:
        return []
    used = _shm_in_use(directory)
    return sorted(p for p in candidates if str(p) not in used)


def sweep_shm(directory: Path = SHM_DIR, prefix: str = SHM_PREFIX, *, dry_run: bool = False) -> list[str]:
    """Unlink orphaned segments; returns their paths."""
    removed = []
    for path in find_orphan_shm(directory, prefix):
        if not dry_run:
            path.unlink(missing_ok=True)
        removed.append(str(path))
    return removed


# --- socket files ------------------------------------------------------------


def _owned(path: Path, kind: int) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()


def _dead_sockets(directory: Path) -> tuple[list[Path], bool]:
    """Socket files of dead actors in ``directory``, and whether nothing else is there."""
    dead, only_dead = [], True
    try:
        entries = list(directory.iterdir())
    except OSError:
        return [], False
    for path in entries:
        parsed = parse_socket_name(path.name)
        if parsed and _owned(path, stat.S_IFSOCK) and not pid_alive(parsed[1]):
            dead.append(path)
        else:
            only_dead = False
    return sorted(dead), only_dead


def find_orphan_uds(base: Path | None = None) -> list[Path]:
    """Socket files whose pid is dead, then run directories whose root pid is dead.

    A dead root's directory is listed only when every entry in it is a dead
    actor's socket: anything unrecognised is left alone, and so is its directory.
    """
    base = runtime_base() if base is None else base
    found, _ = _dead_sockets(base)
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return found
    for path in entries:
        root = parse_run_dir_name(path.name)
        if root is None or not _owned(path, stat.S_IFDIR):
            continue
        dead, only_dead = _dead_sockets(path)
        found += dead
        if only_dead and not pid_alive(root):
            found.append(path)
    return found


def sweep_uds(base: Path | None = None, *, dry_run: bool = False) -> list[str]:
    """Remove dead actors' socket files and dead roots' run directories."""
    removed = []
    for path in find_orphan_uds(base):
        if not dry_run:
            try:
                path.rmdir() if path.is_dir() else path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                continue  # something appeared in it since we looked: keep it
        removed.append(str(path))
    return removed


# --- one call for callers (plugin, CLI) ------------------------------------------------


def run(
    *,
    parent: int | None = None,
    grace: float = 3.0,
    shm: bool = False,
    uds: bool = False,
    dry_run: bool = False,
    through_foreign: bool = True,
) -> ReapReport:
    """Processes first: segments and sockets only become orphaned once their holders died."""
    table = process_table()
    roots = find_orphans(table) if parent is None else find_descendants(parent, table, through_foreign=through_foreign)
    report = reap(roots, grace=grace, dry_run=dry_run, table=table)
    if shm:
        report.shm = sweep_shm(dry_run=dry_run)
    if uds:
        report.uds = sweep_uds(dry_run=dry_run)
    return report


def format_report(report: ReapReport, *, dry_run: bool = False) -> list[str]:
    """Human lines, one per thing found."""
    lines = [f"process {p.pid} (parent {p.ppid}, state {p.state}) {p.title!r}: {p.outcome}" for p in report.processes]
    verb = "would remove" if dry_run else "removed"
    lines += [f"{verb} shm segment {s}" for s in report.shm]
    lines += [f"{verb} socket path {u}" for u in report.uds]
    return lines


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line, not the usage block
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a pid: {text!r}")
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="backends-reap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parent", type=_pid, metavar="PID", help="reap our processes below PID instead of orphans")
    parser.add_argument(
        "--grace", type=_nonneg_float, default=3.0, metavar="S", help="seconds between SIGINT and SIGKILL (default 3)"
    )
    parser.add_argument("--shm", action="store_true", help="also remove orphaned /dev/shm/backends-* segments")
    parser.add_argument("--uds", action="store_true", help="also remove dead actors' socket files and run directories")
    parser.add_argument("--dry-run", action="store_true", help="list only, touch nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.parent is not None and not psutil.pid_exists(args.parent):
        parser.error(f"argument --parent: no process with pid {args.parent}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(parent=args.parent, grace=args.grace, shm=args.shm, uds=args.uds, dry_run=args.dry_run)
    if args.json:
        sys.stdout.write(report.to_json().decode() + "\n")
    else:
        for line in format_report(report, dry_run=args.dry_run) or ["nothing to reap"]:
            print(line)
    return 1 if report.escalated else 0


if __name__ == "__main__":
    sys.exit(main())
