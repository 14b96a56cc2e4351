"""The one "did you mean" for config keys, axis values, cell ids and sessions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def not_one_of(value: str, choices: Iterable[str], what: str = "one of") -> str:
    choices = list(choices)
    return f"'{value}' is not {what} {', '.join(choices)}" + did_you_mean(value, choices)
