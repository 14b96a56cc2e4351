"""Functions defined in the script being run work in actors on every backend, as in the README."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BOUND_S = 120  # a whole script, with children, on a loaded machine

SCRIPT = """
import sys
import trio
import backends


def add(a, b):
    return a + b


async def countdown(n):
    for i in range(n, 0, -1):
        yield i


async def nested(backend):
    # A child's own child: it loads the same script from what its parent sent.
    async with backends.open_nursery(backend=backend) as an:
        return await an.run_in_actor(add, 20, 22)


async def main(backend):
    async with backends.open_nursery(backend=backend) as an:
        portal = await an.start_actor("worker")
        total = await portal.run(add, 1, 2)
        async with portal.open_stream(countdown, 3) as stream:
            got = [x async for x in stream]
        await portal.cancel_actor()
        deep = await an.run_in_actor(nested, backend)
    print("RESULT", total, got, deep, flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
"""


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BOUND_S, check=False)


def test_a_function_of_the_script_runs_in_actors_and_their_children(spawn_backend: str, tmp_path: Path) -> None:
    script = tmp_path / "demo.py"
    script.write_text(SCRIPT)
    proc = run([sys.executable, str(script), spawn_backend], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT 3 [3, 2, 1] 42" in proc.stdout


def test_a_script_without_a_main_guard_gets_told_why(spawn_backend: str, tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT.replace('if __name__ == "__main__":', "if True:"))
    proc = run([sys.executable, str(script), spawn_backend], cwd=tmp_path)
    if spawn_backend == "forkserver":
        # Its children are forks of this process: the script is already loaded, never run again.
        assert proc.returncode == 0, proc.stderr[-3000:]
        return
    assert proc.returncode != 0
    assert "does its entry point sit under `if __name__ == '__main__':`?" in proc.stderr


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_code_given_by_c_or_stdin_is_the_one_clear_refusal(how: str, tmp_path: Path) -> None:
    code = SCRIPT.replace('if __name__ == "__main__":', "if True:").replace("sys.argv[1]", '"trio"')
    argv = [sys.executable, "-c", code] if how == "-c" else [sys.executable, "-"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        argv, input=None if how == "-c" else code, cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=BOUND_S, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "is defined in code given by -c or on stdin, which another actor cannot run again" in proc.stderr


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("## The runtime: `backends`", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'backend="forkserver"' in block
    return block


def test_the_readme_example_runs_as_a_script(spawn_backend: str, tmp_path: Path) -> None:
    script = tmp_path / "demo.py"
    script.write_text(readme_example().replace('backend="forkserver"', f"backend={spawn_backend!r}"))
    proc = run([sys.executable, str(script)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
