"""Session-wide preconditions of the whole test tree."""

from __future__ import annotations

import signal


def pytest_configure(config):
    # A shell starts background jobs with SIGINT and SIGQUIT ignored, and an
    # ignored signal stays ignored across fork and exec: every root, child and
    # CLI the tests start would then shrug off the Ctrl-C they are tested
    # against. Interrupt tests need the disposition an interactive run has.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
