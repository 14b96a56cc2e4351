"""What every spawn backend shares: the request, the child handle, process kills.

A child's boot output (fd 2 until the handshake) goes into a pipe the parent
reads, so a child that dies during boot is reported with the tail of what it
printed; after the handshake the child restores its inherited stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec
import trio

if TYPE_CHECKING:
    import psutil

StdioPolicy = Literal["inherit", "pipe"]
_TAIL_BYTES = 8192
_BOOT_OUTPUT_WAIT = 0.5


class SpawnRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a child needs to boot and connect back; sent to it verbatim."""

    name: str
    uid: str
    backend: str
    parent_addr: tuple[Any, ...]  # ipc.Address
    parent_pid: int
    run_dir: str
    run_token: str
    transport: str
    sys_path: list[str]
    stdio: StdioPolicy = "inherit"
    init: str | None = None  # "module:qualname" run in the child before the handshake
    stderr_fd: int = -1  # the inherited stderr, restored after the handshake
    main_path: str | None = None  # the parent's script, for functions defined in it (_main)


class ChildHandle(Protocol):
    name: str
    pid: int | None  # None: it runs inside our own process
    kind: Literal["process", "interpreter"]

    def poll(self) -> int | None:
        """The exit code once the child is gone, else None."""

    async def wait(self) -> int | None:
        """Wait (cancellably) until the child is gone; its exit code."""

    def terminate(self) -> None:
        """Ask the child to stop now (SIGTERM; abandon for a sub-interpreter)."""

    def kill(self) -> None:
        """Stop the child and everything under it, unconditionally."""

    async def run_io(self) -> None:
        """Pump the child's output; runs beside the child's supervision."""

    def pids(self) -> list[int]:
        """OS processes to clean up after (the child's and its killed subtree's)."""

    def forward_output(self) -> None:
        """Pass the child's output on to our sys.stderr from now on (stdio="pipe")."""

    async def boot_output(self) -> str:
        """The tail of what the child printed before it died during boot."""

    def cleanup(self) -> None:
        """Release handles and kill leftovers of this child's subtree."""


class OutputTail:
    """Reads a child's boot pipe: keeps a tail, forwards when asked to."""

    def __init__(self, fd: int) -> None:
        self._stream = trio.lowlevel.FdStream(fd)
        self._tail = bytearray()
        self.forward = False
        self.eof = trio.Event()

    async def pump(self) -> None:
        try:
            while chunk := await self._stream.receive_some(65536):
                self._tail += chunk
                del self._tail[:-_TAIL_BYTES]
                if self.forward:
                    _write_stderr(chunk)
        except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
            pass
        finally:
            self.eof.set()
            with trio.CancelScope(shield=True):
                await self._stream.aclose()

    def text(self) -> str:
        return self._tail.decode("utf-8", "replace")


def _write_stderr(chunk: bytes) -> None:
    # Through sys.stderr, not fd 2: pytest's --capture=sys then sees it too.
    try:
        sys.stderr.write(chunk.decode("utf-8", "replace"))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class PidfdHandle:
    """A direct child process, waited on and signalled through a pidfd.

    Waits are cancellable and a signal can never hit a recycled pid. SIGTERM
    and SIGKILL take its whole subtree into account, never someone else's pid.
    """

    kind = "process"

    def __init__(self, name: str, pid: int, tail: OutputTail) -> None:
        self.name = name
        self.pid = pid
        self._tail = tail
        self._subtree: list[psutil.Process] = []
        self._pidfd: int | None = os.pidfd_open(pid)
        self._code: int | None = None

    def poll(self) -> int | None:
        if self._code is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Someone else reaped it (a subreaper sweep): gone, code unknown.
                self._code = -1
            else:
                if pid:
                    self._code = os.waitstatus_to_exitcode(status)
            if self._code is not None:
                self._close_pidfd()
        return self._code

    async def wait(self) -> int | None:
        while self.poll() is None:
            assert self._pidfd is not None
            await trio.lowlevel.wait_readable(self._pidfd)
        return self._code

    def pids(self) -> list[int]:
        """The child, then every descendant seen while it was being stopped."""
        return [self.pid, *(p.pid for p in self._subtree)]

    def _snapshot(self) -> None:
        # Taken while the child lives: once it dies its children are re-parented
        # and no longer findable as its descendants.
        import psutil  # here: it costs every exec'd child ~45 ms of boot

        with contextlib.suppress(psutil.Error):
            seen = {p.pid for p in self._subtree}
            self._subtree += [p for p in psutil.Process(self.pid).children(recursive=True) if p.pid not in seen]

    def _signal(self, sig: int) -> None:
        if self.poll() is None and self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        self._snapshot()
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._snapshot()
        self._signal(signal.SIGKILL)
        self._kill_subtree()

    def _kill_subtree(self) -> None:
        import psutil

        for proc in self._subtree:
            with contextlib.suppress(psutil.Error):
                proc.kill()  # psutil checks the create time: a reused pid is left alone

    async def run_io(self) -> None:
        await self._tail.pump()

    async def boot_output(self) -> str:
        # The pipe reaches EOF once the dead child's last writer is gone.
        with trio.move_on_after(_BOOT_OUTPUT_WAIT):
            await self._tail.eof.wait()
        return self._tail.text()

    def forward_output(self) -> None:
        self._tail.forward = True

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            fd, self._pidfd = self._pidfd, None
            trio.lowlevel.notify_closing(fd)
            os.close(fd)

    def cleanup(self) -> None:
        self._kill_subtree()
        if self.poll() is not None:
            self._close_pidfd()
