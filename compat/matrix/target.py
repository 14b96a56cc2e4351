"""What the target's own project says: its groups, lock and Python bounds.

Read once from the target's ``pyproject.toml`` (and whether a ``uv.lock``
sits beside it), so that a (python, group) combination the target cannot
satisfy is known before any image is built.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path

import msgspec
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ..errors import ConfigError


class TargetProject(msgspec.Struct, frozen=True, kw_only=True):
    root: str
    name: str | None = None
    has_pyproject: bool = False
    has_lock: bool = False
    requires_python: str | None = None
    # None: the project declares no dependency groups at all.
    groups: tuple[str, ...] | None = None
    # uv's per-group bounds ([tool.uv.dependency-groups.<g>] requires-python).
    group_requires_python: dict[str, str] = {}

    def refusal(self, python: str, groups: Iterable[str]) -> str | None:
        """Why this project cannot be installed on ``python`` with ``groups``, if it cannot."""
        version = f"{python.rstrip('t')}.0"
        checks = [("the project", self.requires_python)]
        checks += [(f"its dependency group '{g}'", self.group_requires_python.get(g)) for g in groups]
        for what, spec in checks:
            if spec and not _allows(spec, version):
                return f"{what} requires Python {spec} (pyproject.toml), not {python}"
        return None


def _allows(spec: str, version: str) -> bool:
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return True  # uv rejects it at build time, with its own message


def read_project(root: Path) -> TargetProject:
    """The target project at ``root``; a directory without pyproject.toml is a bare test tree."""
    pyproject = root / "pyproject.toml"
    has_lock = (root / "uv.lock").is_file()
    if not pyproject.is_file():
        return TargetProject(root=str(root), has_lock=has_lock)
    try:
        data = tomllib.loads(pyproject.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{pyproject}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{pyproject}: cannot read the target's project: {exc}") from None
    project = data["project"] if isinstance(data.get("project"), dict) else {}
    groups = data.get("dependency-groups")
    uv_groups = data.get("tool", {}).get("uv", {}).get("dependency-groups", {})
    bounds = {
        name: str(spec["requires-python"])
        for name, spec in (uv_groups.items() if isinstance(uv_groups, dict) else ())
        if isinstance(spec, dict) and "requires-python" in spec
    }
    return TargetProject(
        root=str(root),
        name=project.get("name"),
        has_pyproject=True,
        has_lock=has_lock,
        requires_python=project.get("requires-python"),
        groups=tuple(groups) if isinstance(groups, dict) else None,
        group_requires_python=bounds,
    )
