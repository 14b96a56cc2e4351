"""Which config a results directory belongs to: results of two targets never mix.

The first run into a raw directory writes ``.compat-owner.json`` (the config
file and the target it names); a later run or report of another config into
the same directory is refused in one line, and ``compat report`` without a
config finds its config there.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from ..errors import ForeignResults
from ..matrix import Matrix

OWNER = ".compat-owner.json"


class Owner(msgspec.Struct, frozen=True, kw_only=True):
    config: str
    target: str
    name: str | None = None


def owner_of(matrix: Matrix) -> Owner:
    try:
        name = matrix.project().name
    except Exception:  # noqa: BLE001 - a name is only for the message
        name = None
    config = str(Path(matrix.source).resolve()) if matrix.source else ""
    return Owner(config=config, target=str(matrix.target_dir), name=name)


def read_owner(raw_dir: Path) -> Owner | None:
    try:
        return msgspec.json.decode((raw_dir / OWNER).read_bytes(), type=Owner)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def describe(owner: Owner) -> str:
    what = f"target '{owner.name}'" if owner.name else f"target {owner.target}"
    return f"{what} (config {owner.config})" if owner.config else what


def check_owner(raw_dir: Path, matrix: Matrix) -> None:
    """Refuse ``raw_dir`` when another config's results are in it."""
    found = read_owner(raw_dir)
    mine = owner_of(matrix)
    if found is None or not mine.config or not found.config:
        return
    if (found.config, found.target) != (mine.config, mine.target):
        raise ForeignResults(
            f"{raw_dir} holds the results of {describe(found)}, not of {describe(mine)}; "
            "give another --out (or --raw), or remove it"
        )


def claim(raw_dir: Path, matrix: Matrix) -> None:
    """Check ``raw_dir`` is this config's, and record that it is.

    Raw results are never committed: the directory ignores itself in git, as
    pytest's cache directory does.
    """
    check_owner(raw_dir, matrix)
    mine = owner_of(matrix)
    raw_dir.mkdir(parents=True, exist_ok=True)
    ignore_in_git(raw_dir)
    if mine.config and read_owner(raw_dir) != mine:
        (raw_dir / OWNER).write_bytes(msgspec.json.encode(mine))


def ignore_in_git(directory: Path) -> None:
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# Written by spawn-compat: nothing here is committed.\n*\n")
