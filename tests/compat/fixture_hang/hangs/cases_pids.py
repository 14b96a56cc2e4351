"""A test that forks until the cell's pids limit: nothing more can start in the cell, not even the
runner's own commands; the test after it must still run (the host stops the test itself)."""

import os
import time


def test_1_forks_until_the_pids_limit():
    while True:
        try:
            pid = os.fork()
        except OSError:  # EAGAIN: the cgroup's pids limit
            break
        if pid == 0:
            time.sleep(600)
            os._exit(0)
    while True:
        time.sleep(0.5)


def test_1_after():
    pass
