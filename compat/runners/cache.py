"""Per-cell result cache: a cell whose inputs did not change is not run again.

A cell's key hashes everything that decides its result: the environment it
runs in (the image id, or the local venv), the content of every target file
the cell can see (less ``[target] cache-ignore``), the in-cell package, the
exact pytest command and the cell's bounds and environment. The key is kept
in the cell's own ``meta.json``, so the cache is the results directory itself:
a hit keeps that directory and marks its meta ``cached_from`` the run that
produced it (the report and the live view say "cached").

Only a clean result is ever reused: a cell that is ``ok`` or that the target
refused (``unsupported``). As in Bazel, anything else runs again: failing
tests (they may be flaky, and a maintainer re-running wants to see them run),
timeouts, leaks, errors of the machinery and interrupted cells.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import msgspec

from ..matrix import Cell, Matrix
from ..paths import CELL_PACKAGE
from ..results.raw import read_cell, read_meta
from ..results.schema import CellMeta
from .base import write_meta
from .command import CTR_OUT, CTR_PLUGIN, CTR_TARGET, entry_spec

FORMAT = "spawn-compat-cache-1"
CACHEABLE_STATUSES = frozenset({"ok", "unsupported"})
# Caches and environments, never what a test depends on: skipped even where
# git would list them (beyond them, a work tree's .gitignore decides).
JUNK_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", ".nox", ".tox", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
)


def _files(root: Path) -> list[str]:
    """The target's files, relative and sorted: git's view (tracked + untracked, not ignored) when it has one."""
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root, capture_output=True, check=False, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        proc = None
    if proc is not None and proc.returncode == 0:
        listed = {p for p in proc.stdout.decode(errors="surrogateescape").split("\0") if p}
        return sorted(p for p in listed if JUNK_DIRS.isdisjoint(p.split("/")[:-1]))
    found = []
    for here, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in JUNK_DIRS]
        rel = Path(here).relative_to(root)
        found += [(rel / n).as_posix() for n in names]
    return sorted(found)


def target_files(matrix: Matrix, out_dir: Path | None = None) -> tuple[list[str], str]:
    """What a cell sees of the target (git's view, without the results in ``out_dir``), and a digest of all of it."""
    root = matrix.target_dir
    results = (out_dir or matrix.raw_dir).resolve()
    prefix = results.relative_to(root).as_posix() + "/" if results.is_relative_to(root) else None
    files = [rel for rel in _files(root) if prefix is None or not rel.startswith(prefix)]
    return files, _digest_files(root, files)


def _ignored(rel: str, patterns: Sequence[str]) -> bool:
    path = PurePosixPath(rel)
    return any(path.full_match(p) for p in patterns)


def tree_digest(root: Path, *, ignore: Sequence[str] = (), skip: Iterable[Path] = ()) -> str:
    """sha256 over the names and contents of ``root``'s files (symlinks by target)."""
    skipped = [p.resolve() for p in skip]
    files = [
        rel
        for rel in _files(root)
        if not _ignored(rel, ignore) and not any((root / rel).resolve().is_relative_to(s) for s in skipped)
    ]
    return _digest_files(root, files)


def file_digests(root: Path, files: Iterable[str]) -> dict[str, str]:
    """Each file's sha256 (a symlink's of its target's name), as the cell plugin hashes a dependency."""
    found = {}
    for rel in files:
        path = root / rel
        try:
            if path.is_symlink():
                data = b"->" + os.readlink(path).encode(errors="surrogateescape")
            elif path.is_file():
                data = path.read_bytes()
            else:
                continue  # deleted but still tracked, a socket, a FIFO
        except OSError as exc:
            data = f"unreadable: {exc.strerror}".encode()
        found[rel] = hashlib.sha256(data).hexdigest()
    return found


def _digest_files(root: Path, files: Iterable[str]) -> str:
    return digest_of(file_digests(root, files))


def digest_of(digests: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel, digest in digests.items():
        h.update(rel.encode(errors="surrogateescape") + b"\0" + bytes.fromhex(digest))
    return h.hexdigest()


def target_file_digests(matrix: Matrix, out_dir: Path) -> dict[str, str]:
    """The target files a cell can see, less its cache-ignore globs, the results and the config file,
    each with its digest.

    What the config says about a cell is in the cell's key already (its command, bounds,
    environment); the rest of it cannot change a result.
    """
    root = matrix.target_dir
    skipped = [p.resolve() for p in (out_dir, *([Path(matrix.source)] if matrix.source else []))]
    files = [
        rel
        for rel in _files(root)
        if not _ignored(rel, matrix.target.cache_ignore)
        and not any((root / rel).resolve().is_relative_to(s) for s in skipped)
    ]
    return file_digests(root, files)


def run_inputs(matrix: Matrix, out_dir: Path) -> RunInputs:
    """What every cell of a run shares in its key (hashed once): the target's files and the in-cell package."""
    files = target_file_digests(matrix, out_dir)
    return RunInputs(files=files, target=digest_of(files), cell_package=tree_digest(CELL_PACKAGE))


class RunInputs(msgspec.Struct, frozen=True, kw_only=True):
    files: dict[str, str]
    target: str
    cell_package: str


def cell_key(
    matrix: Matrix,
    cell: Cell,
    *,
    runner: str,
    environment: str,
    shared: RunInputs,
    pytest_args: Sequence[str],
    with_target: bool = True,
) -> str:
    """Everything that determines the cell's result, hashed (``shared``: ``run_inputs``).

    ``with_target=False``: its context, everything but the target's files (the incremental
    re-run's key: under the same context, what an edit changes is decided module by module).
    """
    spec = entry_spec(matrix, cell, out=CTR_OUT, cwd=CTR_TARGET, plugin=CTR_PLUGIN, extra=pytest_args, fresh_dirs=True)
    parts = {
        "format": FORMAT,
        "cell": cell.id,
        "runner": runner,
        "environment": environment,
        "cell_package": shared.cell_package,
        **({"target": shared.target} if with_target else {}),
        "spec": spec,
        "limits": msgspec.to_builtins(matrix.limits),
        "sandbox": msgspec.to_builtins(matrix.sandbox),
        "installs_project": matrix.installs_project(),
        "import_paths": matrix.target.import_paths,
        "unsupported": matrix.target.unsupported_patterns,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def final(out: Path) -> bool:
    """A clean result, which running again under the same inputs would repeat."""
    result = read_cell(out)
    return result.status in CACHEABLE_STATUSES and result.problem is None


def lookup(out: Path, key: str) -> CellMeta | None:
    """The cell's last result if it was made with ``key`` and is final; nothing is written."""
    meta, _ = read_meta(out)
    return meta if meta is not None and meta.cache_key == key and final(out) else None


def reuse(out: Path, meta: CellMeta, run_id: str) -> CellMeta:
    """Mark a looked-up result as this run's, reused from the run that made it."""
    reused = msgspec.structs.replace(meta, run_id=run_id, cached_from=meta.cached_from or meta.run_id)
    write_meta(out, reused)
    return reused
