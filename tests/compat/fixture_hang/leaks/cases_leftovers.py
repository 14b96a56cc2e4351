"""Tests that leave things alive in their process (any target may): each is a leak only if it is
still alive when the session has ended; what its owner closes by then, or what ends by itself, is not."""

import os
import sys
import threading
import time

import pytest


@pytest.fixture(scope="session")
def session_pool():
    # A pool of the session's: alive across tests, closed at the session's end. No leak.
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, name="session-pool", daemon=True)
    worker.start()
    yield
    stop.set()
    worker.join()


def sleeps_forever():
    while True:
        time.sleep(1)


def test_leaves_a_thread_running(session_pool):
    threading.Thread(target=sleeps_forever, name="leftover-worker", daemon=True).start()


def test_leaves_a_shared_memory_segment():
    fd = os.open(f"/dev/shm/fixture-left-{os.getpid()}", os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def test_leaves_a_subinterpreter():
    if sys.version_info < (3, 14):
        pytest.skip("sub-interpreters need 3.14")
    import _interpreters

    _interpreters.create("legacy")


def test_a_thread_that_ends_by_itself_is_no_leak(session_pool):
    threading.Thread(target=time.sleep, args=(0.1,), name="short-lived", daemon=True).start()


def test_clean():
    pass
