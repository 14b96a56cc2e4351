"""A pretend task runtime: three backends that run a function and say where."""

import os
import threading

import attrs

BACKENDS = ("inline", "pool", "threads")


@attrs.frozen
class Result:
    backend: str
    value: object


def run(backend: str, fn, *args):
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    if backend == "threads":
        box = []
        t = threading.Thread(target=lambda: box.append(fn(*args)))
        t.start()
        t.join()
        return Result(backend, box[0])
    return Result(backend, fn(*args))


def selected() -> str | None:
    """The backend named by the environment, as taskmesh's own CI selects one."""
    return os.environ.get("TASKMESH_BACKEND")
