"""spawn-compat's own sessions: compat's, from compat.toml (as any target adds them), and ours.

`uv run nox -l` lists them; a bare `uv run nox` is the main job (`matrix`, then `report`).
"""

from __future__ import annotations

import nox

import compat.nox

compat.nox.sessions()


@nox.session
def tests(session: nox.Session) -> None:
    """spawn-compat's own tests (uv run pytest); posargs go to pytest."""
    session.run("uv", "run", "pytest", *session.posargs, external=True)
