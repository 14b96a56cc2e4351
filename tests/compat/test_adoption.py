"""spawn-compat as a new user meets it: a wheel installed as a uv tool, used from a repository that is not ours.

The wheel is built from this checkout and installed with `uv tool install`
into directories of its own; the project is a copy of fixture_adopter (its
own pyproject, lock, test group, entry-point plugin, src layout, backends
chosen by parametrised ids and by an environment variable) in its own git
repository outside this tree. Every command runs there with nothing of this
checkout on PATH, PYTHONPATH or in the working directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from compat import __version__
from tests.compat import cellsupport

ROOT = Path(__file__).resolve().parents[2]
ADOPTER = Path(__file__).with_name("fixture_adopter")
REQS = Path(__file__).with_name("fixture_reqs")
SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
BACKENDS = """backend = ["inline", "pool", "threads"]"""
BACKEND_MAP = """[target.backend-map]
inline = { pytest-args = ["-k", "inline"] }
pool = { pytest-args = ["-k", "pool"] }
threads = { env = { TASKMESH_BACKEND = "threads" } }
"""


@dataclass(frozen=True)
class Tool:
    bin: Path
    wheel: Path
    env: dict[str, str]

    def run(self, cwd: Path, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def compat(self, cwd: Path, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.run(cwd, str(self.bin / "compat"), *argv, timeout=timeout)


def outside_the_checkout(path: str) -> bool:
    return not Path(path).resolve().is_relative_to(ROOT)


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> Tool:
    """The wheel `uv build` makes, installed with `uv tool install`, with nox's executable beside it."""
    cellsupport.require_engine()
    root = tmp_path_factory.mktemp("tool")
    uv = shutil.which("uv")
    assert uv is not None
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    built = subprocess.run(
        [uv, "build", "--wheel", "--package", "spawn-compat", "--out-dir", str(root / "dist"), str(ROOT)],
        capture_output=True, text=True, env=base_env, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = (root / "dist").glob("spawn_compat-*.whl")
    env = {
        **base_env,
        "UV_TOOL_DIR": str(root / "tools"),
        "UV_TOOL_BIN_DIR": str(root / "bin"),
        # The tool's own bin, uv, and the system: nothing of this checkout.
        "PATH": os.pathsep.join([str(root / "bin"), str(Path(uv).parent), *SYSTEM_PATH]),
        "CI": "",  # the tool's own output, not a test run's
    }
    # A user names a Python 3.13+ when the default one is older (as uv's own hint says).
    python = str(Path(getattr(sys, "_base_executable", sys.executable)))
    installed = subprocess.run(
        [uv, "tool", "install", str(wheel), "--with-executables-from", "nox", "--python", python],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert all(outside_the_checkout(p) for p in env["PATH"].split(os.pathsep))
    assert "PYTHONPATH" not in env
    return Tool(bin=root / "bin", wheel=wheel, env=env)


def new_repository(source: Path, where: Path) -> Path:
    shutil.copytree(source, where, ignore=shutil.ignore_patterns("__pycache__", "reports", ".venv"))
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    subprocess.run(["git", "-C", str(where), "add", "-A"], check=True)
    assert outside_the_checkout(str(where))
    return where


@pytest.fixture(scope="module")
def project(tool: Tool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """taskmesh's repository after `compat init` and the edit its maintainer makes to name the backends."""
    repo = new_repository(ADOPTER, tmp_path_factory.mktemp("adopter") / "taskmesh")
    init = tool.compat(repo, "init")
    assert init.returncode == 0, init.stderr
    assert init.stdout.splitlines()[0] == f"wrote {repo / 'compat.toml'}"
    assert "  python: 3.13, 3.14" in init.stdout.splitlines()
    assert "  groups: base; test group: checks" in init.stdout.splitlines()  # docs is a tool group, not a feature
    assert "  tests: tests" in init.stdout.splitlines()
    assert "no option that selects a backend was found" in init.stdout  # said, for the user to check
    config = (repo / "compat.toml").read_text()
    assert 'test-groups = ["checks"]' in config and 'uv-version = "' in config
    # What a maintainer then writes: one Python to keep it short, the backends and how each is chosen.
    config = config.replace('python = ["3.13", "3.14"]', 'python = ["3.14"]')
    config = re.sub(r"^backend = \[.*\]$", BACKENDS, config, flags=re.M)
    config = config.replace("[target.backend-map]\n", BACKEND_MAP, 1)
    (repo / "compat.toml").write_text(config)
    return repo


@pytest.fixture(scope="module")
def ran(tool: Tool, project: Path) -> dict:
    plan = tool.compat(project, "plan")
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[-1] == "6 cells"
    run = tool.compat(project, "run", "-j", "3", "--no-progress")
    assert run.returncode == 8, run.stdout + run.stderr  # the pool backend's failing test
    report = tool.compat(project, "report")
    assert report.returncode == 0, report.stderr
    return json.loads((project / "reports" / "compat.json").read_bytes())


def test_the_installed_tool_is_complete_and_not_this_checkout(tool: Tool, tmp_path: Path) -> None:
    version = tool.compat(tmp_path, "--version")
    assert (version.returncode, version.stdout) == (0, f"compat {__version__}\n")
    python = next((tool.bin.parent / "tools" / "spawn-compat" / "bin").glob("python"))
    where = tool.run(
        tmp_path, str(python), "-c",
        "import compat, compat.paths as p; print(compat.__file__); "
        "print(p.DOCKERFILE.is_file(), p.MAKE_BASE.is_file())",
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    module, found = where.stdout.splitlines()
    assert outside_the_checkout(module) and found == "True True"
    # The runtime we test by default is another distribution: a user of the service never gets its plugin.
    listed = tool.run(tmp_path, str(python), "-c", "import importlib.util as u; print(u.find_spec('backends'))")
    assert listed.stdout.strip() == "None"


def test_every_cell_has_the_status_its_backend_gives_it(ran: dict) -> None:
    cells = {c["id"]: (c["status"], c.get("reason", "")) for c in ran["cells"]}
    assert cells == {
        "py3.14-base-inline-capfd": ("ok", ""),
        "py3.14-base-inline-capsys": ("ok", ""),
        "py3.14-base-pool-capfd": ("failing", "1 failing: tests/test_mesh.py::test_pool_keeps_order[pool]"),
        "py3.14-base-pool-capsys": ("failing", "1 failing: tests/test_mesh.py::test_pool_keeps_order[pool]"),
        "py3.14-base-threads-capfd": ("ok", ""),
        "py3.14-base-threads-capsys": ("ok", ""),
    }
    assert ran["target"]["name"] == "taskmesh"


def test_each_backends_selection_ran_exactly_its_tests(ran: dict) -> None:
    where = {t["nodeid"]: set(t["results"]) for t in ran["tests"]}
    for backend in ("inline", "pool", "threads"):
        # -k picked one parametrisation, the environment variable the other: never a neighbour's.
        assert where[f"tests/test_mesh.py::test_runs_a_function[{backend}]"] == {
            f"py3.14-base-{backend}-capfd",
            f"py3.14-base-{backend}-capsys",
        }
    results = {t["nodeid"]: t["results"] for t in ran["tests"]}
    # Its plugin exists only because the project was built and installed (an entry point); src/ is not on a path.
    assert {r["status"] for r in results["tests/test_mesh.py::test_runs_a_function[threads]"].values()} == {"passed"}
    # The sandbox is an ordinary machine, and the target's checkout is writable.
    for name in ("test_the_machine_is_an_ordinary_one", "test_writes_into_its_checkout"):
        statuses = {r["status"] for nodeid, rs in results.items() if name in nodeid for r in rs.values()}
        assert statuses == {"passed"}, name


def test_selections_compose_and_an_empty_one_is_an_error(tool: Tool, project: Path, ran: dict) -> None:
    narrowed = tool.compat(project, "run", "py3.14-base-inline-capsys", "--no-progress", "--", "-k", "runs_a")
    assert narrowed.returncode == 0, narrowed.stderr
    events = (project / "reports" / "raw" / "py3.14-base-inline-capsys" / "events.jsonl").read_text()
    ran_ids = sorted(json.loads(line)["nodeid"] for line in events.splitlines() if '"event": "result"' in line)
    assert ran_ids == ["tests/test_mesh.py::test_runs_a_function[inline]"]  # (inline) and (runs_a), not runs_a alone
    empty = tool.compat(project, "run", "py3.14-base-inline-capsys", "--no-progress", "--", "-k", "no_such_test")
    assert empty.returncode == 8
    assert (
        "pytest collected no tests (exit 5): the selection matched nothing: tests -k '(inline) and (no_such_test)'"
        in empty.stdout + empty.stderr
    )


def test_the_workflow_installs_this_wheel_and_names_its_config(tool: Tool, project: Path, ran: dict) -> None:
    written = tool.compat(project, "workflow")
    assert written.returncode == 0, written.stderr
    assert "which only this machine has" in written.stderr  # a wheel outside the repository: said, not hidden
    text = (project / ".github" / "workflows" / "matrix.yml").read_text()
    assert text.startswith("# Generated by `compat workflow` from compat.toml: do not edit by hand.\n")
    assert f"SPAWN_COMPAT: {tool.wheel}" in text
    assert "uv run" not in text and "nox" not in text
    assert 'compat --matrix compat.toml run "${cells[@]}" --no-progress --out reports/raw' in text
    check = tool.compat(project, "workflow", "--check")
    assert check.returncode == 0, check.stderr


def test_the_projects_own_noxfile_gets_compats_sessions(tool: Tool, project: Path, ran: dict) -> None:
    listing = tool.run(project, str(tool.bin / "nox"), "-l")
    assert listing.returncode == 0, listing.stderr
    assert "- lint -> taskmesh's own linting" in listing.stdout
    assert (
        "- test-3.14-threads [test,py3.14,threads] -> Python 3.14, threads backend: its 2 cells, one container each."
        in listing.stdout
    )
    one = tool.run(project, str(tool.bin / "nox"), "-s", "test-3.14-threads(base-fd)")
    assert one.returncode == 0, one.stdout + one.stderr
    assert "ok          py3.14-base-threads-capfd" in one.stdout + one.stderr


def test_a_project_with_requirements_and_an_extra_runs_its_cells(tool: Tool, tmp_path: Path) -> None:
    repo = new_repository(REQS, tmp_path / "reqkit")
    run = tool.compat(repo, "run", "--no-progress", "-j", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    for cell in ("py3.14-base-fast-capsys", "py3.14-base-safe-capsys"):
        assert re.search(rf"^\[\d/2\] ok\s+{cell}  2 passed", run.stdout, re.M), run.stdout


def test_two_targets_never_share_results_and_the_refusal_is_one_line(tool: Tool, project: Path, ran: dict) -> None:
    other = new_repository(REQS, project.parent / "reqkit-next-door")
    raw = project / "reports" / "raw"
    before = sorted(p.name for p in raw.iterdir())
    refused = tool.compat(project, "--matrix", str(other / "compat.toml"), "run", "--out", str(raw))
    assert refused.returncode == 11
    assert refused.stderr == (
        f"compat: error: {raw} holds the results of target 'taskmesh' (config {project / 'compat.toml'}), "
        f"not of target 'reqkit' (config {other / 'compat.toml'}); give another --out (or --raw), or remove it\n"
    )
    report = tool.compat(project, "--matrix", str(other / "compat.toml"), "report", "--raw", str(raw))
    assert report.returncode == 11 and report.stderr.count("\n") == 1
    assert sorted(p.name for p in raw.iterdir()) == before  # nothing written
    # Its own results go under its own config's directory, whatever the current directory is.
    assert not (other / "reports").exists()


@pytest.mark.parametrize(
    ("files", "argv", "expected"),
    [
        ({}, ("plan",), "compat: error: no compat.toml (or [tool.spawn-compat] in a pyproject.toml) in {dir} or any "
         "directory above it; run `compat init` to write one, or name one with --matrix\n"),
        ({"compat.toml": "", "pyproject.toml": "[tool.spawn-compat]\n"}, ("plan",),
         "compat: error: {dir}/compat.toml and {dir}/pyproject.toml both configure spawn-compat; keep one "
         "(or name it with --matrix)\n"),
        ({"compat.toml": "# mine\n"}, ("init",),
         "compat: error: {dir}/compat.toml already configures spawn-compat; edit it "
         "(init never overwrites a config)\n"),
        ({"compat.toml": '[target]\ninstall = "conda"\n'}, ("plan",),
         "compat: error: {dir}/compat.toml: $.target.install: 'conda' is not one of auto, lock, pyproject, "
         "requirements\n"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_nonzero_and_writes_nothing(
    tool: Tool, tmp_path: Path, files: dict[str, str], argv: tuple[str, ...], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = tool.compat(tmp_path, *argv)
    assert done.returncode == 2
    assert done.stderr == expected.replace("{dir}", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)
    assert all((tmp_path / name).read_text() == text for name, text in files.items())


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- adopt-commands -->", 1)[1].split("<!-- /adopt-commands -->", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("```")]


def test_the_readmes_use_it_in_your_project_commands_run_as_written(tool: Tool, tmp_path: Path) -> None:
    commands = readme_commands()
    # The first line as written, in this checkout, into tool directories of its own (the tool fixture
    # installed the wheel the same line builds, which a workflow can carry).
    assert commands[0] == "uv tool install --with-executables-from nox ."
    own = Tool(
        bin=tmp_path / "bin",
        wheel=tool.wheel,
        env={**tool.env, "UV_TOOL_DIR": str(tmp_path / "tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin")},
    )
    installed = own.run(ROOT, *commands[0].split(), timeout=600)
    assert installed.returncode == 0, installed.stderr
    for name in ("compat", "nox"):
        version = own.run(tmp_path, str(own.bin / name), "--version")
        assert version.returncode == 0, (name, version.stderr)
    assert commands[1] == "cd /path/to/your/runtime"
    repo = new_repository(ADOPTER, tmp_path / "taskmesh")
    expected = {"compat init": 0, "compat plan": 0, "compat run": 8, "compat report": 0, "compat workflow": 0}
    assert commands[2:] == list(expected)
    for command in commands[2:]:
        done = tool.compat(repo, *command.split()[1:])
        # As written the project has one backend (init found no option): the pool parametrisation fails.
        assert done.returncode == expected[command], (command, done.stdout[-2000:], done.stderr[-2000:])
    assert (repo / "reports" / "COMPATIBILITY.md").is_file()
    assert (repo / ".github" / "workflows" / "matrix.yml").is_file()
