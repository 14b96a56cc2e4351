"""Functions defined in the script being run (``__main__``), callable in any actor.

A child cannot import ``__main__`` by that name: in it, ``__main__`` is the
child's own entry (or, forked, a copy that may be another program's). So, as
multiprocessing's spawn does, the parent names such a function
``__backends_main__:qualname`` and sends its script's path; a child that is
asked for one runs the script once under that name (the
``if __name__ == "__main__":`` block stays off) and looks the function up
there. Code given by ``-c`` or on stdin has no file to run again: that is the
one case refused, in the parent, with a clear error.
"""

from __future__ import annotations

import os
import sys
import types

# Not multiprocessing's "__mp_main__": importing multiprocessing binds that
# name to whatever ``__main__`` is, which in a child is the child's entry.
ALIAS = "__backends_main__"
# In a child: the script its parent sent (SpawnRequest.main_path).
_parent_script: str | None = None


def set_parent_script(path: str | None) -> None:
    global _parent_script  # noqa: PLW0603 - one per actor, set once at its boot
    _parent_script = path


def main_script() -> str | None:
    """The path of the script ``__main__`` was run from, if it was run from a file."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    return os.path.abspath(path)


def script_for_children() -> str | None:
    """What a child needs to load the script's functions: this actor's own copy's file, else the running script."""
    loaded = sys.modules.get(ALIAS)
    path = getattr(loaded, "__file__", None)
    return path if isinstance(path, str) else main_script()


def module_for(fn: object) -> str:
    """The name another actor imports ``fn``'s ``__main__`` module by."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:
        return str(spec.name)  # `python -m pkg.mod`: importable by that name
    if main_script() is not None:
        return ALIAS
    raise TypeError(
        f"{fn!r} is defined in code given by -c or on stdin, which another actor cannot run again: "
        "save it in a file (or a module) and run that"
    )


def load() -> types.ModuleType:
    """``__backends_main__`` in this actor: the parent's script, run once under that name."""
    if (loaded := sys.modules.get(ALIAS)) is not None:
        return loaded
    path = _parent_script
    if path is None:
        raise ImportError(f"{ALIAS} was asked for, but the parent sent no script to load it from")
    main = sys.modules.get("__main__")
    if getattr(main, "__file__", None) == path and main is not None:
        sys.modules[ALIAS] = main  # forked from the script's own process: it is already here
        return main
    module = types.ModuleType(ALIAS)
    module.__file__ = path
    sys.modules[ALIAS] = module
    try:
        with open(path, "rb") as f:
            code = compile(f.read(), path, "exec")
        exec(code, module.__dict__)
    except BaseException as exc:
        del sys.modules[ALIAS]
        raise ImportError(
            f"running {path} as {ALIAS} (to find the functions it defines) failed with "
            f"{type(exc).__name__}: {exc}; does its entry point sit under `if __name__ == '__main__':`?"
        ) from exc
    return module
