"""Raw results as CI hands them back: one artifact per job and attempt, merged newest-attempt-first.

actions/download-artifact (without merge-multiple) lays artifacts out as
``ARTIFACTS/<artifact-name>/<cell-id>/``. Artifact names end in ``-<attempt>``
(``github.run_attempt``), so re-running a failed job adds a second copy of
its cells instead of colliding with the first; for each cell the highest
attempt wins, the way GitHub shows a re-run job.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..errors import ConfigError
from .raw import cell_dirs

_ATTEMPT = re.compile(r"-(\d+)$")


def attempt_of(artifact: Path) -> int:
    m = _ATTEMPT.search(artifact.name)
    return int(m.group(1)) if m else 0


def merge(artifacts: Path, out: Path) -> dict[str, Path]:
    """Copy the newest attempt's directory of every cell into ``out``; cell id -> where it came from."""
    if not artifacts.is_dir():
        raise ConfigError(f"{artifacts}: no such directory of downloaded artifacts")
    chosen: dict[str, tuple[int, Path]] = {}
    for artifact in sorted(p for p in artifacts.iterdir() if p.is_dir()):
        attempt = attempt_of(artifact)
        for cell in cell_dirs(artifact):
            if cell.name not in chosen or attempt > chosen[cell.name][0]:
                chosen[cell.name] = (attempt, cell)
    out.mkdir(parents=True, exist_ok=True)
    for name, (_, source) in sorted(chosen.items()):
        dest = out / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(source, dest, symlinks=True)
    return {name: source for name, (_, source) in chosen.items()}
