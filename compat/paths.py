"""Where this checkout's own files are: the embedded target and the image recipes."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
DOCKERFILE = CONTAINERS / "Dockerfile"
MAKE_BASE = CONTAINERS / "make-base"
