"""Runs last: a hang on forkserver with --capture=no ends that cell at its bound."""

import time


def test_hangs_on_forkserver_capture_no(backend, capture):
    if backend == "forkserver" and capture == "no":
        time.sleep(3600)


def test_after_the_hang():
    assert True
