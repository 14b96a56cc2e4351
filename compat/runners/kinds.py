"""The runners a cell can run in: the one table the CLI's choices, its help and the scheduler read.

No import of docker or rich here: ``compat --help`` and ``compat plan`` read it.
"""

from __future__ import annotations

from ..results.schema import RunnerKind

AUTO = "auto"
RUNNERS: dict[RunnerKind, str] = {
    "docker": "each cell in its own hardened container (the default where an engine answers)",
    "local": "host interpreters in uv venvs, each cell in its own PID namespace where unshare allows",
}
CHOICES: tuple[str, ...] = (AUTO, *RUNNERS)


def help_text() -> str:
    described = "; ".join(f"{name}: {what}" for name, what in RUNNERS.items())
    return f"where cells run (default {AUTO}: docker when an engine answers, else local). {described}"
