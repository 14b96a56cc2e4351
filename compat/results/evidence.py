"""What a cell leaves besides its tests: leaks (reap.json, census.json), the hang's class and its dumps."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from ..cell import protocol as P
from .events import MESSAGE_LIMIT, _tail
from .files import read_optional, read_raw
from .schema import Hang, Leaks

DUMP_LIMIT = 16384


class _Census(msgspec.Struct):
    processes: list[dict[str, object]] = []
    zombies: int = 0


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


TREE_HEADER = "--- trio task tree ---"
SYSTEM_TASKS = ("<init>", "<TrioToken.run_sync_soon task>", "trio.")


def read_hang(cell_dir: Path) -> Hang | None:
    """forensics.json and the task trees in dumps/, if the cell was investigated; never raises."""
    try:
        data = json.loads(read_raw(cell_dir / P.FORENSICS))
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
    dumps = tuple(sorted(p.name for p in (cell_dir / P.DUMPS).glob("*.txt"))) if (cell_dir / P.DUMPS).is_dir() else ()
    return Hang(
        kind=kind,
        detail=detail[:MESSAGE_LIMIT],
        child=f"{child.get('class')}: {child.get('detail', '')}"[:MESSAGE_LIMIT] if isinstance(child, dict) else "",
        stuck=stuck_tasks(cell_dir / P.DUMPS),
        seconds=data.get("seconds"),
        dumps=dumps,
    )


def stuck_tasks(dumps: Path, limit: int = 5) -> tuple[str, ...]:
    """The leaf tasks of every trio task tree in ``dumps`` (what each one awaits), system tasks left out."""
    found: list[str] = []
    for path in sorted(dumps.glob("*.txt")) if dumps.is_dir() else []:
        try:
            text = read_raw(path).decode(errors="replace")
        except OSError:
            continue
        for tree in text.split(TREE_HEADER)[1:]:
            tasks = [line for line in tree.splitlines() if line.lstrip().startswith("task ")]
            for i, line in enumerate(tasks):
                depth = len(line) - len(line.lstrip())
                has_child = i + 1 < len(tasks) and len(tasks[i + 1]) - len(tasks[i + 1].lstrip()) > depth
                name = line.strip()[len("task ") :].strip("'\"")
                if not has_child and not name.startswith(SYSTEM_TASKS):
                    found.append(f"{path.name}: {line.strip()}")
    return tuple(dict.fromkeys(found))[:limit]


def read_leaks(cell_dir: Path) -> tuple[Leaks, str | None]:
    """Leaks found in a cell, and the damage that hid some of them."""
    fields: dict[str, int] = {}
    details: list[str] = []
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
