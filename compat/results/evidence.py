"""What a cell leaves besides its tests: leaks (reap.json, census.json), the hang's class and its dumps."""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ..cell import protocol as P
from .events import MESSAGE_LIMIT, _tail
from .files import read_optional, read_raw
from .schema import Frame, Hang, HangClass, Leaks, Stacks, StuckFrame

DUMP_LIMIT = 16384


class _Census(msgspec.Struct):
    processes: list[dict[str, object]] = []
    zombies: int = 0
    shm: list[str] = []


# Keys of `backends-reap --json` whose entries are leaked resources, by kind.
_REAP_KINDS = {
    "processes": "reaped",
    "killed": "reaped",
    "actors": "reaped",
    "pids": "reaped",
    "shm": "shm",
    "segments": "shm",
    "uds": "sockets",
    "sockets": "sockets",
    "run_dirs": "sockets",
}


def parse_reap(data: bytes) -> dict[str, int]:
    """Count what the reaper found, tolerating shapes it may grow into."""
    doc = msgspec.json.decode(data)
    counts = {"reaped": 0, "shm": 0, "sockets": 0}
    if isinstance(doc, list):
        counts["reaped"] = len(doc)
        return counts
    if not isinstance(doc, dict):
        raise ValueError("reap.json is neither an object nor a list")
    for key, value in doc.items():
        kind = _REAP_KINDS.get(key)
        if kind is None:
            continue
        counts[kind] += len(value) if isinstance(value, list | dict) else int(value or 0)
    return counts


def parse_census(data: bytes) -> tuple[int, int, list[str]]:
    """(live processes, zombies, their command lines); zombies are listed too."""
    census = msgspec.json.decode(data, type=_Census)
    live = [p for p in census.processes if p.get("state") != "Z"]
    cmdlines = [f"{p.get('pid')}: {p.get('cmdline', '')}" for p in census.processes]
    return len(live), census.zombies, cmdlines


SYSTEM_TASKS = ("<init>", "<TrioToken.run_sync_soon task>", "trio.")
HANG_CLASSES: tuple[str, ...] = typing.get_args(HangClass)
# Frames of the interpreter's own library and of installed packages: where a thread waits, not why.
_LIBRARY = re.compile(r"/(?:lib/python3\.\d+|site-packages|dist-packages)/|^<frozen ")
FRAMES_PER_HANG = 12


def read_hangs(cell_dir: Path) -> tuple[Hang, ...]:
    """Every investigated hang of the cell (hangs/<NN>/), in order; never raises."""
    root = cell_dir / P.HANGS
    try:
        dirs = sorted(d for d in root.iterdir() if d.is_dir())
    except OSError:
        return ()
    return tuple(h for d in dirs if (h := read_hang(cell_dir, d)) is not None)


def read_hang(cell_dir: Path, hang_dir: Path) -> Hang | None:
    """One hang: forensics.json's class, the stacks read from outside, the task trees in dumps/."""
    try:
        data = json.loads(read_raw(hang_dir / P.FORENSICS))
        found = data["class"]
        kind = str(found["class"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    child = found.get("child") if isinstance(found, dict) else None
    trees = data.get("task_trees") or {}
    silent = sorted(set(trees.get("asked", [])) - set(trees.get("answered", [])))
    detail = str(found.get("detail", ""))
    if silent:
        # A Python handler that never ran: the process's main thread could not run Python.
        detail += f"; no trio task tree came back from pid {', '.join(map(str, silent))}"
    stacks, stacks_problem = read_stacks(hang_dir)
    rel = hang_dir.relative_to(cell_dir).as_posix()
    files = [f"{rel}/{p.name}" for p in sorted(hang_dir.iterdir()) if p.is_file()]
    # A cell that resumed after a hang has the dumps of several pytest processes: this hang's are its own.
    pids = {str(pid) for pid in data.get("processes") or {}}
    dumps = [p for p in _dump_files(cell_dir / P.DUMPS) if p.stem.rsplit("-", 1)[-1] in pids]
    files += [f"{P.DUMPS}/{p.name}" for p in dumps]
    return Hang(
        kind=typing.cast(HangClass, kind if kind in HANG_CLASSES else "unknown"),
        nodeid=str(data.get("nodeid") or ""),
        bound=str(data.get("bound") or ""),
        detail=detail[:MESSAGE_LIMIT],
        child=f"{child.get('class')}: {child.get('detail', '')}"[:MESSAGE_LIMIT] if isinstance(child, dict) else "",
        stuck=stuck_tasks(dumps),
        frames=stuck_frames(stacks) if stacks is not None else (),
        stacks_problem=stacks_problem,
        seconds=data.get("seconds"),
        files=tuple(files),
    )


def read_stacks(hang_dir: Path) -> tuple[Stacks | None, str]:
    try:
        return msgspec.json.decode(read_raw(hang_dir / P.STACKS), type=Stacks), ""
    except FileNotFoundError:
        return None, "no stacks were read from outside"
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return None, f"{P.STACKS} unreadable: {exc}"


def _own(frames: tuple[Frame, ...]) -> Frame | None:
    """The innermost frame of the code under test (not the interpreter's library nor a package's)."""
    mine = [f for f in frames if not _LIBRARY.search(f.file)] or list(frames)
    return mine[-1] if mine else None


def stuck_frames(stacks: Stacks) -> tuple[StuckFrame, ...]:
    """Per process and interpreter: where its main thread and the GIL holder were, in their own code."""
    found: list[StuckFrame] = []
    for proc in stacks.processes:
        main = proc.threads[-1] if proc.threads else None  # pystack lists the main thread last
        chosen = [t for t in proc.threads if t.gil or t is main or any(i.interpreter for i in t.interpreters)]
        for thread in chosen:
            for interp in thread.interpreters:
                frame = _own(interp.frames)
                if frame is None:
                    continue
                where = StuckFrame(
                    pid=proc.pid, process=proc.cmdline[:120], thread=thread.name or f"thread {thread.tid}",
                    interpreter=interp.interpreter, gil=thread.gil, frame=str(frame),
                )  # fmt: skip
                found.append(where)
    return tuple(dict.fromkeys(found))[:FRAMES_PER_HANG]


def _dump_files(dumps: Path) -> list[Path]:
    return sorted(dumps.glob("*.txt")) if dumps.is_dir() else []


def stuck_tasks(dumps: Iterable[Path], limit: int = 5) -> tuple[str, ...]:
    """The leaf tasks of every trio task tree in the ``dumps`` files (what each one awaits), system tasks
    left out."""
    found: list[str] = []
    for path in dumps:
        try:
            text = read_raw(path).decode(errors="replace")
        except OSError:
            continue
        for tree in text.split(P.TREE_HEADER)[1:]:
            tasks = [line for line in tree.splitlines() if line.lstrip().startswith("task ")]
            for i, line in enumerate(tasks):
                depth = len(line) - len(line.lstrip())
                has_child = i + 1 < len(tasks) and len(tasks[i + 1]) - len(tasks[i + 1].lstrip()) > depth
                name = line.strip()[len("task ") :].strip("'\"")
                if not has_child and not name.startswith(SYSTEM_TASKS):
                    found.append(f"{path.name}: {line.strip()}")
    return tuple(dict.fromkeys(found))[:limit]


def read_leaks(cell_dir: Path, left: dict[str, list[tuple[str, str]]] | None = None) -> tuple[Leaks, str | None]:
    """Leaks found in a cell (``left``: what each test left alive in its process, from the events),
    and the damage that hid some of them."""
    fields: dict[str, int] = {}
    details: list[str] = []
    for nodeid, items in (left or {}).items():
        for kind, what in items:
            if kind in ("thread", "subinterpreter"):
                key = "threads" if kind == "thread" else "subinterpreters"
                fields[key] = fields.get(key, 0) + 1
            details.append(f"{nodeid} left {what}")
    damage = None
    reap = read_optional(cell_dir / P.REAP)
    if reap is not None:
        try:
            fields.update(parse_reap(reap))
        except (msgspec.DecodeError, ValueError, TypeError, RecursionError) as exc:
            damage = f"reap.json: {exc}"
    census = read_optional(cell_dir / P.CENSUS)
    if census is not None:
        try:
            fields["processes"], fields["zombies"], cmdlines = parse_census(census)
            details.extend(cmdlines[:20])
            # Segments still there after the reaper (whoever made them; a test's are named above).
            left_shm = msgspec.json.decode(census, type=_Census).shm
            fields["shm"] = fields.get("shm", 0) + len(left_shm)
            details.extend(f"/dev/shm/{name} left after the cell" for name in left_shm[:20])
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            damage = damage or f"census.json: {exc}"
    return Leaks(**fields, details=tuple(details)), damage


def read_dumps(cell_dir: Path, limit: int = DUMP_LIMIT) -> str:
    """The hang dumps of a cell, concatenated, each clipped to its tail."""
    dump_dir = cell_dir / P.DUMPS
    try:
        files = sorted(p for p in dump_dir.iterdir() if p.is_file())
    except OSError:
        return ""
    parts = []
    for path in files:
        try:
            text = read_raw(path).decode(errors="replace")
        except OSError:
            continue
        if text.strip():
            parts.append(f"--- {path.name}\n{_tail(text, limit // max(1, len(files)))}")
    return "\n".join(parts)
