"""The pretend runtime: it needs its dependency at import, like a real one."""

import tomli_w

BACKENDS = ("plain", "fork")


def describe(backend: str, wire: str) -> str:
    return tomli_w.dumps({"backend": backend, "wire": wire})
