"""What a cell's environment is made from: the target's project files and one install script.

Images (``images``) and local venvs (``local``) are both made by running the
same script (``sh compat-install.sh VENV PYTHON``) on a copy of the same
files, so the two runners test the same environment. The script is the
target's own way in: ``uv sync`` of its lock or pyproject (its test groups,
the cell's group, its extras; a workspace member with ``--package``), then
its requirement files; a bare test tree gets pytest alone. The target's own
source is never part of it (its wheel is installed when the cell starts,
``wheel``), so editing the target never rebuilds an image.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec

from ..cell import protocol as P
from ..errors import ConfigError
from ..matrix import Matrix

SCRIPT = "compat-install.sh"
# -r / -c lines of a requirements file name other files, relative to it.
_INCLUDE = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)(?:\s+|=)(?P<path>\S+)")


class Install(msgspec.Struct, frozen=True, kw_only=True):
    """The files to copy (path in the project directory, path on the host) and the script that installs them."""

    files: tuple[tuple[str, str], ...]
    script: str

    def digest(self) -> str:
        h = hashlib.sha256()
        for dest, source in self.files:
            data = Path(source).read_bytes()
            h.update(dest.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
        h.update(self.script.encode())
        return h.hexdigest()[:12]

    def copy_to(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for dest, source in self.files:
            (directory / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, directory / dest)
        (directory / SCRIPT).write_text(self.script)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dest for dest, _ in self.files)


def install_for(matrix: Matrix, group: str) -> Install:
    """How a (python, group) environment of the target is made."""
    target = matrix.target
    project = matrix.project()
    root = Path(project.root)
    mode = matrix.install_mode(project)
    files: dict[str, Path] = {}
    lines = ["set -eu", "venv=$1 python=$2"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(target.build_env.items())]
    name = target.group_name(group)
    requirements = list(target.requirements)
    if mode == "requirements":
        if name is not None:
            requirements.append(name)
        lines.append('uv venv --quiet "$venv" --python "$python"')
        if not requirements:
            # A bare test tree names nothing to install: pytest is what it needs.
            lines.append('uv pip install --python "$venv/bin/python" pytest')
    else:
        files["pyproject.toml"] = root / "pyproject.toml"
        files.update({f"{m}/pyproject.toml": root / m / "pyproject.toml" for m in project.members})
        use_lock = mode == "lock"
        if use_lock:
            files["uv.lock"] = root / "uv.lock"
        groups = list(matrix.test_groups(project))
        if name is not None and name not in groups:
            groups.append(name)
        lines.append(
            'UV_PROJECT_ENVIRONMENT="$venv" uv sync '
            + shlex.join(_sync(matrix, groups, frozen=use_lock))
            + ' --python "$python"'
        )
    for rel in requirements:
        for included in _requirement_files(root, rel):
            files[included] = root / included
        lines.append(f'uv pip install --python "$venv/bin/python" -r {shlex.quote(rel)}')
    # The target's wheel is installed when a cell starts; this line puts it on every interpreter's sys.path.
    lines.append('site=$("$venv/bin/python" -c \'import sysconfig; print(sysconfig.get_paths()["purelib"])\')')
    lines.append(f'printf "%s\\n" {shlex.quote(P.TARGET_PTH_LINE)} > "$site/{P.TARGET_PTH}"')
    return Install(files=tuple(sorted((d, str(s)) for d, s in files.items())), script="\n".join(lines) + "\n")


def _sync(matrix: Matrix, groups: list[str], *, frozen: bool) -> list[str]:
    target = matrix.target
    args = ["--frozen"] if frozen else []
    if target.package:
        args += ["--no-install-workspace", "--package", target.package]
    else:
        args += ["--no-install-project"]
    args += ["--no-default-groups"]
    for g in groups:
        args += ["--group", g]
    for extra in target.extras:
        args += ["--extra", extra]
    return args


def _requirement_files(root: Path, rel: str, seen: frozenset[str] = frozenset()) -> Iterator[str]:
    """A requirements file and every file its -r/-c lines name, as paths relative to the target."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ConfigError(f"{root / rel}: a requirements file outside the target cannot go into its images")
    name = path.relative_to(root.resolve()).as_posix()
    if name in seen:
        return
    yield name
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the requirements file: {exc.strerror}") from None
    for line in text.splitlines():
        if m := _INCLUDE.match(line):
            yield from _requirement_files(root, str(Path(name).parent / m["path"]), seen | {name})
