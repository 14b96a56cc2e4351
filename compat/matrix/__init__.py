"""matrix.toml, its cells and their names: what to run, before anything runs."""

from .cells import AXES, Cell, ParsedId, cell_id, match_ids, new_run_id, parse_cell_id
from .config import (
    CAPTURE_MODES,
    AxesConfig,
    CellBounds,
    ContainerLimits,
    ExtraAxis,
    ImagesConfig,
    Matrix,
    TargetConfig,
    decode,
    load,
    substitute,
)
from .target import TargetProject, read_project

__all__ = [
    "AXES",
    "CAPTURE_MODES",
    "AxesConfig",
    "Cell",
    "CellBounds",
    "ContainerLimits",
    "ExtraAxis",
    "ImagesConfig",
    "Matrix",
    "ParsedId",
    "TargetConfig",
    "TargetProject",
    "cell_id",
    "decode",
    "load",
    "match_ids",
    "new_run_id",
    "parse_cell_id",
    "read_project",
    "substitute",
]
