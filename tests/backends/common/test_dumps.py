"""An actor's hang dumps: its trio task tree on SIGUSR2, beside its thread stacks (SIGUSR1)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.backends._harness import kill_actors

ROOT = Path(__file__).resolve().parents[3]
BOUND_S = 60.0  # spawning on a loaded machine; the dump itself is immediate

SCRIPT = """
import sys
import trio
import backends


async def parked(ready):
    open(ready, "w").close()  # the test asks for the tree only once this task is parked
    await trio.sleep_forever()


async def main(backend, ready):
    async with backends.open_nursery(backend=backend) as an:
        portal = await an.start_actor("parker")
        print("PID", portal.pid, flush=True)
        await portal.run(parked, ready)


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
"""


def test_an_actor_writes_its_task_tree_on_sigusr2(spawn_backend: str, tmp_path: Path) -> None:
    if spawn_backend == "subint":
        pytest.skip("a sub-interpreter actor shares its host's signals: stacks only, no task tree of its own")
    script, dumps = tmp_path / "parker.py", tmp_path / "dumps"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "BACKENDS_DUMP_DIR": str(dumps),
    }
    ready = tmp_path / "ready"
    root = subprocess.Popen(
        [sys.executable, str(script), spawn_backend, str(ready)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    child = None
    try:
        assert root.stdout is not None
        readable, _, _ = select.select([root.stdout], [], [], BOUND_S)
        line = root.stdout.readline() if readable else ""
        assert line.startswith("PID "), f"no PID line within {BOUND_S:g} s: {line!r}"
        child = int(line.split()[1])
        deadline = time.monotonic() + BOUND_S
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), f"the actor's task did not start within {BOUND_S:g} s"
        os.kill(child, signal.SIGUSR2)
        text = ""
        while time.monotonic() < deadline and "parked" not in text:
            time.sleep(0.05)
            text = "".join(p.read_text() for p in dumps.glob(f"*-{child}.txt"))
        assert "--- trio task tree ---" in text, text
        # The task serving the call, the await it is parked on (in this script, not in trio), its nursery.
        assert "parker.py:" in text and "in parked" in text and "nursery:" in text, text
    finally:
        root.send_signal(signal.SIGINT)
        try:
            root.wait(timeout=BOUND_S)
        except subprocess.TimeoutExpired:
            root.kill()
            root.wait()
        if root.stdout is not None:
            root.stdout.close()
        if child is not None:
            kill_actors([child])
