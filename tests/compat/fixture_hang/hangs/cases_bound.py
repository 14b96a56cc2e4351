"""One cell, six hangs: each test after a hang must still run (the per-test bound is a bound).

Run in order, in one cell, with a per-test bound of a few seconds: every
``test_N_*`` hangs (or kills its own process), every ``test_N_after`` passes.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

# A child that installed no handler for anything: only a reader from outside sees its stack.
CHILD = """
import time
def child_sleeps_without_a_handler():
    while True:
        time.sleep(1)
child_sleeps_without_a_handler()
"""
SUBINTERPRETER = """
def spins_inside_the_subinterpreter():
    while True:
        pass
spins_inside_the_subinterpreter()
"""


def test_1_waits_for_a_child_without_handlers():
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    try:
        child.wait()
    finally:
        child.kill()


def test_1_after():
    pass


def test_2_a_subinterpreter_never_returns():
    if sys.version_info < (3, 14):
        pytest.skip("sub-interpreters need 3.14")
    import _interpreters

    _interpreters.exec(_interpreters.create("legacy"), SUBINTERPRETER)


def test_2_after():
    pass


def burns_the_gil():
    while True:
        sum(range(1000))


def test_3_a_thread_holds_the_gil_while_main_waits():
    thread = threading.Thread(target=burns_the_gil, name="gil-burner", daemon=True)
    thread.start()
    thread.join()


def test_3_after():
    pass


def test_4_a_trio_await_nobody_answers():
    import trio

    async def waits_for_a_message(receive):
        await receive.receive()

    async def main():
        send, receive = trio.open_memory_channel(0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waits_for_a_message, receive, name="lonely-receiver")

    trio.run(main)


def test_4_after():
    pass


def sleeps_outside_trio():
    while True:
        time.sleep(0.5)


def dumps_its_own_way(signum, frame):
    # Like tractor's --enable-stackscope: a handler of the target's own, into a file of its own.
    with open(f"/tmp/fixture-dump-{os.getpid()}.log", "w") as f:
        f.write(f"the target's own dump: {frame.f_code.co_name}\n")


def test_5_a_plain_sleep():
    signal.signal(signal.SIGUSR1, dumps_its_own_way)
    sleeps_outside_trio()


def test_5_after():
    pass


def test_6_its_process_exits_under_it(request):
    # What pytest-timeout's thread method does at a target's own timeout mark: past the capture, a
    # banner on the terminal, then the whole process ends.
    request.config.pluginmanager.getplugin("capturemanager").suspend_global_capture(in_=True)
    sys.stderr.write("\n+++++++++++++++++++ Timeout +++++++++++++++++++\n")
    sys.stderr.flush()
    os._exit(1)


def test_6_after():
    pass
