"""Every fatal error of the compat service, each with its own exit code.

Only ``compat.cli.main`` catches these; it prints ``str(error)`` as one line
and exits with ``error.exit_code``.
"""

from __future__ import annotations


class CompatError(Exception):
    exit_code = 1


class ConfigError(CompatError):
    """The config (or an argument) is invalid; the message names file and key."""

    exit_code = 2


class EngineError(CompatError):
    """The container engine is missing, unreachable or refused a request."""

    exit_code = 3


class EnvironmentFailed(CompatError):
    """A cell's environment (its image, its venv, the target's wheel) could not be made; ``output``
    is the whole output of what failed, kept as the cell's output.log."""

    exit_code = 4

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class ImageBuildError(EnvironmentFailed):
    """An image could not be built."""


class PythonUnavailable(ImageBuildError):
    """No image or host interpreter can provide this Python: its cells are `unavailable`, not errors."""


class OutputBusy(CompatError):
    """Another run is writing into the same results directory."""

    exit_code = 10


class ForeignResults(CompatError):
    """A results directory holds another config's (another target's) results."""

    exit_code = 11


class ReportError(CompatError):
    """Results could not be turned into a report."""

    exit_code = 6


class RegressionFound(CompatError):
    """--fail-on-regression and the baseline diff found a new failure."""

    exit_code = 7


class CellsFailed(CompatError):
    """A run finished, but some cells failed, errored or timed out."""

    exit_code = 8


class WorkflowStale(CompatError):
    """The committed workflow differs from what ``compat workflow`` writes."""

    exit_code = 9
