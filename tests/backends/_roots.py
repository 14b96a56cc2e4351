"""A root actor in its own process, for scenarios that signal or kill the root.

``python -m tests.backends._roots BEACON KIND [KIND ...]`` opens a nursery
(backend from $BACKENDS_SPAWN_BACKEND), starts one child per KIND, prints
``READY`` once every child was handed its work, and waits. The test
process sends SIGINT or SIGKILL and watches what survives. Children report
their pids to the test's beacon, not to this process, so the reports
outlive a SIGKILLed root.

KIND: ``sleep`` (parks at a checkpoint), ``stuck`` (sync loop that ignores
a vanished beacon), ``parent-sleep`` / ``parent-stuck`` (a child whose
grandchild sleeps / is stuck).

Output lines: ``READY``, then on the way out ``EXIT <what ended trio.run>``.
"""

from __future__ import annotations

import functools
import sys

import trio

import backends

from . import _actors


def _work(kind: str, beacon: str):
    if kind == "sleep":
        return functools.partial(_actors.sleep_forever_marked, beacon)
    if kind == "stuck":
        return functools.partial(_actors.sync_sleep_loop, beacon, "sleep", False)
    if kind.startswith("parent-"):
        return functools.partial(_actors.spawn_and_park, beacon, kind.removeprefix("parent-"))
    raise SystemExit(f"unknown child kind {kind!r}")


async def main(beacon: str, kinds: list[str]) -> None:
    async with backends.open_nursery() as an, trio.open_nursery() as tn:
        for i, kind in enumerate(kinds):
            portal = await an.start_actor(f"{kind}-{i}")
            work = _work(kind, beacon)
            tn.start_soon(functools.partial(portal.run, work.func, *work.args))
        print("READY", flush=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "|".join(sorted({_describe(e) for e in exc.exceptions}))
    return type(exc).__name__


if __name__ == "__main__":
    beacon, *kinds = sys.argv[1:]
    try:
        trio.run(main, beacon, kinds)
    except BaseException as exc:
        print(f"EXIT {_describe(exc)}", flush=True)
        if isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, BaseExceptionGroup) and exc.subgroup(KeyboardInterrupt)
        ):
            sys.exit(130)
        raise
    print("EXIT clean", flush=True)
