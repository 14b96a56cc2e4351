"""taskmesh's own nox sessions, with spawn-compat's added by one call."""

import nox

import compat.nox

compat.nox.sessions()


@nox.session
def lint(session):
    """taskmesh's own linting (a session of its own, beside compat's)."""
    session.log("nothing to lint")
