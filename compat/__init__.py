"""spawn-compat: the matrix service (``compat`` on the command line)."""

__version__ = "0.2.0"
