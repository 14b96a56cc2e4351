"""The target built as a wheel on the host, once per content, for cells to install (as tox does).

A cell then has the target's entry points, pytest plugins and compiled parts,
as a user's environment would, while its image holds only the dependencies.
The build runs on the host, which has the network and the target's git
history (setuptools-scm reads its version there), with ``[target] build-env``
set. Wheels are cached by a hash of the target's files, so an unchanged
target is built once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import EnvironmentFailed
from ..matrix import Matrix
from ..paths import CACHE_ROOT
from .locks import exclusive

WHEEL_ROOT = CACHE_ROOT / "wheels"
BUILD_TIMEOUT_S = 900
BUILD_TAIL = 12
COMPLETE = ".complete"
LOG = "build.log"


class TargetBuildError(EnvironmentFailed):
    """The target could not be built into a wheel; ``output`` is the build's whole output."""


def target_wheels(matrix: Matrix, files_digest: str, *, uv: str | None = None) -> Path | None:
    """The directory holding the target's wheel, built when its files changed; None when cells do not install it."""
    if not matrix.installs_project():
        return None
    target = matrix.target
    key = hashlib.sha256(
        "\0".join([files_digest, target.package, *(f"{k}={v}" for k, v in sorted(target.build_env.items()))]).encode()
    ).hexdigest()[:16]
    out = WHEEL_ROOT / key
    if (out / COMPLETE).exists():
        return out
    with exclusive(f"wheel {out}"):
        if (out / COMPLETE).exists():
            return out
        return _build_into(matrix, out, key, uv)


def _build_into(matrix: Matrix, out: Path, key: str, uv: str | None) -> Path:
    uv = uv or shutil.which("uv")
    if uv is None:
        raise TargetBuildError("building the target needs uv on PATH (https://docs.astral.sh/uv/)")
    WHEEL_ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=WHEEL_ROOT))
    try:
        output = _build(uv, matrix, staging)
        (staging / LOG).write_text(output)
        (staging / COMPLETE).touch()
        for path in (staging, *staging.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)  # the cell's user reads them
        try:
            staging.rename(out)
        except OSError:  # another run built the same wheel meanwhile: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
        return out
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _build(uv: str, matrix: Matrix, out: Path) -> str:
    target = matrix.target
    cmd: Sequence[str] = [uv, "build", "--wheel", "--quiet", "--out-dir", str(out)]
    if target.package:
        cmd = [*cmd, "--package", target.package]
    # The interpreter compat runs on builds it when the target accepts it: a machine's other
    # Pythons are not searched (nor a newer one downloaded) for a build that needs nothing else.
    here = ".".join(map(str, sys.version_info[:2]))
    if matrix.project().allows_python(here):
        cmd = [*cmd, "--python", sys.executable]
    cmd = [*cmd, str(matrix.target_dir)]
    env = {**os.environ, **target.build_env}
    env.pop("VIRTUAL_ENV", None)
    try:
        proc = subprocess.run(
            cmd, cwd=matrix.target_dir, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise TargetBuildError(f"building the target's wheel took more than {BUILD_TIMEOUT_S} s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or not list(out.glob("*.whl")):
        tail = " | ".join(line.strip() for line in output.strip().splitlines()[-BUILD_TAIL:] if line.strip())
        hint = ""
        if "setuptools-scm" in output or "setuptools_scm" in output:
            hint = "; a version from git needs [target.build-env] SETUPTOOLS_SCM_PRETEND_VERSION where git cannot tell"
        raise TargetBuildError(
            f"building the target's wheel failed (uv build, exit {proc.returncode}): {tail or 'no output'}{hint}",
            output,
        )
    return output
