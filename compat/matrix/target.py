"""What the target's own project says: its groups, extras, lock, Python bounds and test paths.

Read once from the target's ``pyproject.toml`` (and whether a ``uv.lock``
sits beside it), so that a (python, group) combination the target cannot
satisfy is known before any image is built. A uv workspace member is read
from its own ``pyproject.toml``; the lock is the workspace's.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from ..errors import ConfigError


class TargetProject(msgspec.Struct, frozen=True, kw_only=True):
    root: str
    # The directory of the project under test: ``root``, or a workspace member's.
    project_dir: str = ""
    name: str | None = None
    has_pyproject: bool = False
    has_lock: bool = False
    # A distribution that can be built and installed (it has a [build-system], or uv says so).
    is_package: bool = False
    requires_python: str | None = None
    classifiers: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    # None: the project declares no dependency groups at all.
    groups: tuple[str, ...] | None = None
    # Each group's requirements, `include-group` entries followed.
    group_requirements: dict[str, tuple[str, ...]] = {}
    # uv's per-group bounds ([tool.uv.dependency-groups.<g>] requires-python).
    group_requires_python: dict[str, str] = {}
    extras: dict[str, tuple[str, ...]] = {}
    # The workspace members' directories, relative to root (their pyproject.toml go into images).
    members: tuple[str, ...] = ()
    # pytest's testpaths, from whichever file configures pytest.
    testpaths: tuple[str, ...] = ()
    dynamic: tuple[str, ...] = ()
    build_requires: tuple[str, ...] = ()

    def refusal(self, python: str, groups: Iterable[str]) -> str | None:
        """Why this project cannot be installed on ``python`` with ``groups``, if it cannot."""
        version = f"{python.rstrip('t')}.0"
        checks = [("the project", self.requires_python)]
        checks += [(f"its dependency group '{g}'", self.group_requires_python.get(g)) for g in groups]
        for what, spec in checks:
            if spec and not _allows(spec, version):
                return f"{what} requires Python {spec} (pyproject.toml), not {python}"
        return None

    def allows_python(self, python: str) -> bool:
        return self.requires_python is None or _allows(self.requires_python, f"{python}.0")

    def declares(self, name: str, *, groups: Iterable[str] = (), extras: Iterable[str] = ()) -> bool:
        """Whether the dependencies, the given groups or extras name the distribution ``name``."""
        wanted = canonicalize_name(name)
        specs = [*self.dependencies]
        for group in groups:
            specs += self.group_requirements.get(group, ())
        for extra in extras:
            specs += self.extras.get(extra, ())
        return any(requirement_name(spec) == wanted for spec in specs)


def requirement_name(spec: str) -> str | None:
    try:
        return canonicalize_name(Requirement(spec).name)
    except InvalidRequirement:
        return None


def _allows(spec: str, version: str) -> bool:
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return True  # uv rejects it at build time, with its own message


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the target's project: {exc}") from None


def _table(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        value = data.get(key)
        if not isinstance(value, dict):
            return {}
        data = value
    return data


def workspace_members(root: Path, data: dict[str, Any]) -> dict[str, Path]:
    """The workspace's member projects by name (uv's ``[tool.uv.workspace] members`` globs)."""
    workspace = _table(data, "tool", "uv", "workspace")
    listed = workspace.get("members")
    members = listed if isinstance(listed, list) else []
    exclude = workspace.get("exclude")
    patterns = [g for g in exclude if isinstance(g, str)] if isinstance(exclude, list) else []
    excluded = {p.resolve() for g in patterns for p in root.glob(g)}
    found: dict[str, Path] = {}
    for pattern in members:
        if not isinstance(pattern, str):
            continue
        for directory in sorted(root.glob(pattern)):
            pyproject = directory / "pyproject.toml"
            if directory.resolve() in excluded or not pyproject.is_file():
                continue
            name = _table(_toml(pyproject), "project").get("name")
            if isinstance(name, str):
                found[str(canonicalize_name(name))] = directory
    return found


def read_project(root: Path, package: str = "") -> TargetProject:
    """The target project at ``root`` (or its workspace member ``package``).

    A directory without pyproject.toml is a bare test tree.
    """
    pyproject = root / "pyproject.toml"
    has_lock = (root / "uv.lock").is_file()
    testpaths = pytest_testpaths(root)
    if not pyproject.is_file():
        if package:
            raise ConfigError(f"{root}: package '{package}' needs a pyproject.toml with a uv workspace")
        return TargetProject(root=str(root), project_dir=str(root), has_lock=has_lock, testpaths=testpaths)
    data = _toml(pyproject)
    members = workspace_members(root, data)
    project_dir, project_data = root, data
    if package:
        member = members.get(str(canonicalize_name(package)))
        if member is None and canonicalize_name(package) != canonicalize_name(
            str(_table(data, "project").get("name", ""))
        ):
            known = ", ".join(sorted(members)) or "none"
            raise ConfigError(f"{pyproject}: '{package}' is not a member of its uv workspace (members: {known})")
        if member is not None:
            project_dir, project_data = member, _toml(member / "pyproject.toml")
            testpaths = testpaths or pytest_testpaths(member)
    project = _table(project_data, "project")
    groups = project_data.get("dependency-groups")
    uv = _table(project_data, "tool", "uv")
    bounds = {
        name: str(spec["requires-python"])
        for name, spec in _table(uv, "dependency-groups").items()
        if isinstance(spec, dict) and "requires-python" in spec
    }
    build = _table(project_data, "build-system")
    is_package = uv.get("package") is True or (bool(build) and uv.get("package") is not False)
    return TargetProject(
        root=str(root),
        project_dir=str(project_dir),
        name=project.get("name"),
        has_pyproject=True,
        has_lock=has_lock,
        is_package=is_package,
        requires_python=project.get("requires-python"),
        classifiers=tuple(c for c in project.get("classifiers") or () if isinstance(c, str)),
        dependencies=tuple(d for d in project.get("dependencies") or () if isinstance(d, str)),
        groups=tuple(groups) if isinstance(groups, dict) else None,
        group_requirements=dict(_group_requirements(groups)) if isinstance(groups, dict) else {},
        group_requires_python=bounds,
        extras={
            str(k): tuple(x for x in v if isinstance(x, str))
            for k, v in _table(project_data, "project", "optional-dependencies").items()
            if isinstance(v, list)
        },
        members=tuple(sorted(str(p.relative_to(root)) for p in members.values())),
        testpaths=testpaths,
        dynamic=tuple(d for d in project.get("dynamic") or () if isinstance(d, str)),
        build_requires=tuple(r for r in build.get("requires") or () if isinstance(r, str)),
    )


def _group_requirements(groups: dict[str, Any]) -> Iterator[tuple[str, tuple[str, ...]]]:
    def entries(name: str, seen: frozenset[str]) -> Iterator[str]:
        for entry in groups.get(name) or ():
            if isinstance(entry, str):
                yield entry
            elif isinstance(entry, dict) and isinstance(entry.get("include-group"), str):
                included = entry["include-group"]
                if included not in seen:
                    yield from entries(included, seen | {included})

    for name in groups:
        yield name, tuple(entries(name, frozenset({name})))


_TESTPATHS_INI = re.compile(r"\s+")


def pytest_testpaths(root: Path) -> tuple[str, ...]:
    """pytest's ``testpaths`` as the target configures them (pytest.ini, pyproject, tox.ini, setup.cfg)."""
    for name, section in (("pytest.ini", "pytest"), ("pytest.ini", "tool:pytest")):
        if (root / name).is_file():
            return _ini_testpaths(root / name, section)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            options = _table(_toml(pyproject), "tool", "pytest", "ini_options")
        except ConfigError:
            options = {}
        if options:
            paths = options.get("testpaths")
            return tuple(paths) if isinstance(paths, list) else ((paths,) if isinstance(paths, str) else ())
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        if (root / name).is_file() and (found := _ini_testpaths(root / name, section)):
            return found
    return ()


def _ini_testpaths(path: Path, section: str) -> tuple[str, ...]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return ()
    if not parser.has_option(section, "testpaths"):
        return ()
    return tuple(p for p in _TESTPATHS_INI.split(parser.get(section, "testpaths").strip()) if p)
