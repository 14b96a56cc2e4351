"""``trio`` backend: a fresh interpreter per child (``python -m backends._child``)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import msgspec
import trio

from ._base import OutputTail, ProcessHandle, SpawnRequest

NAME = "trio"


def unavailable() -> str | None:
    return None


class _ExecHandle(ProcessHandle):
    def __init__(self, name: str, proc: trio.Process, tail: OutputTail) -> None:
        super().__init__(name, proc.pid, tail)
        self._proc = proc

    def poll(self) -> int | None:
        return self._proc.poll()

    async def wait(self) -> int | None:
        return await self._proc.wait()  # pidfd-based on Linux: cancellable


class TrioBackend:
    name = NAME

    def unavailable(self) -> str | None:
        return unavailable()

    async def spawn(self, request: SpawnRequest) -> _ExecHandle:
        boot_r, boot_w = os.pipe()
        stderr_copy = os.dup(2)
        try:
            request = msgspec.structs.replace(request, stderr_fd=stderr_copy)
            arg = base64.b64encode(msgspec.msgpack.encode(request)).decode()
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "backends._child", arg],
                stdin=subprocess.DEVNULL,
                stdout=boot_w if request.stdio == "pipe" else None,
                stderr=boot_w,
                pass_fds=(stderr_copy,),
            )
        except BaseException:
            os.close(boot_r)
            raise
        finally:
            os.close(boot_w)
            os.close(stderr_copy)
        return _ExecHandle(request.name, proc, OutputTail(boot_r))


BACKEND = TrioBackend()
