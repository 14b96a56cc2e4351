"""What a cell's environment is made from: the target's project files and one ``uv sync``.

Images (``images``) and local venvs (``local``) are both made by running the
same ``uv sync`` on a copy of the same files, so the two runners test the
same environment. A target without a ``pyproject.toml`` (a bare test tree)
gets this project's own test environment.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import msgspec

from ..matrix import Matrix
from ..paths import ROOT


class Install(msgspec.Struct, frozen=True, kw_only=True):
    """The project files to copy and the ``uv sync`` arguments for one (python, group)."""

    files: tuple[str, ...]
    args: tuple[str, ...]

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in self.files:
            data = Path(name).read_bytes()
            h.update(Path(name).name.encode() + len(data).to_bytes(8, "big") + data)
        h.update("\0".join(self.args).encode())
        return h.hexdigest()[:12]

    def copy_to(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in self.files:
            shutil.copy(name, directory / Path(name).name)


def install_for(matrix: Matrix, group: str) -> Install:
    target = matrix.target
    project = matrix.project()
    if not project.has_pyproject:
        own = [str(ROOT / "pyproject.toml"), str(ROOT / "uv.lock")]
        cell_group = [] if group == "base" else [group]
        return Install(files=tuple(own), args=_sync(["test", *cell_group], frozen=True))
    groups = [*target.test_groups]
    name = target.group_name(group)
    if name is not None and name not in groups:
        groups.append(name)
    use_lock = project.has_lock and target.install != "pyproject"
    files = [str(Path(project.root) / "pyproject.toml")]
    if use_lock:
        files.append(str(Path(project.root) / "uv.lock"))
    return Install(files=tuple(files), args=_sync(groups, frozen=use_lock))


def _sync(groups: list[str], *, frozen: bool) -> tuple[str, ...]:
    args = ["--frozen"] if frozen else []
    args += ["--no-install-project", "--no-default-groups"]
    for g in groups:
        args += ["--group", g]
    return tuple(args)
