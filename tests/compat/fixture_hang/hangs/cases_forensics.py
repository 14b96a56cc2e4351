"""One constructed hang per class, chosen by --fixture-backend; the forensics step must name each."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

IGNORES_SIGNALS = """
import signal, time
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
while True:
    time.sleep(1)
"""
# Catastrophic backtracking: the regex engine holds the GIL for hours.
SPIN = "import re; re.match(r'(a+)+$', 'a' * 64 + 'b')"


def test_hang(backend):
    if backend == "await":
        awaits_a_channel_whose_peer_is_gone()
    elif backend == "starved":
        a_subinterpreter_holds_the_gil()
    elif backend == "pipe":
        waits_for_a_fork_child_writing_into_a_full_pipe()
    elif backend == "child":
        waits_for_a_child_that_ignores_signals()
    elif backend == "blocked":
        writes_into_a_full_pipe()
    else:
        pytest.skip("only with a hang backend")


def awaits_a_channel_whose_peer_is_gone():
    import trio

    async def orphan_waiter(receive):
        await receive.receive()  # the sending side is never used again, nor closed

    async def main():
        send, receive = trio.open_memory_channel(0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(orphan_waiter, receive, name="orphan-waiter")

    trio.run(main)


def a_subinterpreter_holds_the_gil():
    if sys.version_info < (3, 14):
        pytest.skip("sub-interpreters need 3.14")
    import _interpreters

    interp = _interpreters.create("legacy")  # shares the main interpreter's GIL
    threading.Thread(target=_interpreters.exec, args=(interp, SPIN), name="subint-spin", daemon=True).start()
    while True:
        time.sleep(0.1)


def waits_for_a_fork_child_writing_into_a_full_pipe():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        while True:
            os.write(write, b"x" * 65536)  # nobody reads: blocks once the pipe is full
    os.close(write)
    os.waitpid(pid, 0)


def waits_for_a_child_that_ignores_signals():
    child = subprocess.Popen([sys.executable, "-c", IGNORES_SIGNALS])
    try:
        child.wait()
    finally:
        child.kill()


def writes_into_a_full_pipe():
    read, write = os.pipe()
    while True:
        os.write(write, b"x" * 65536)
