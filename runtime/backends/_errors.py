"""Every exception the runtime raises on purpose."""

from __future__ import annotations


class BackendUnavailable(RuntimeError):
    """The requested spawn backend cannot run on this interpreter or host."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"spawn backend {backend!r} is unavailable here: {reason}")
        self.backend = backend
        self.reason = reason


class RemoteActorError(Exception):
    """An exception raised inside an actor, boxed with its type name and traceback."""

    def __init__(self, actor: str, type_name: str, message: str, traceback: str) -> None:
        super().__init__(f"{type_name}: {message} (in actor {actor!r})")
        self.actor = actor
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        # A note travels inside formatted tracebacks: when this error is boxed
        # again one level up, the root cause's traceback goes with it.
        self.add_note(f"--- traceback in actor {actor!r} ---\n{traceback.rstrip()}")

    @property
    def boxed_type(self) -> type[BaseException] | None:
        """The remote exception's class, when it is a builtin or importable here."""
        module, _, qualname = self.type_name.rpartition(".")
        if not module:
            module = "builtins"
        try:
            import importlib

            obj: object = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            return None
        return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None

    def __reduce__(self) -> tuple[type[RemoteActorError], tuple[str, str, str, str]]:  # picklable for xdist reports
        return (type(self), (self.actor, self.type_name, self.message, self.traceback))


class ActorBootError(RuntimeError):
    """A child died (or failed) before completing the handshake."""

    def __init__(self, actor: str, exitcode: int | None, stderr_tail: str) -> None:
        tail = stderr_tail.strip()
        super().__init__(
            f"actor {actor!r} died during boot (exit code {exitcode})" + (f"; its last output:\n{tail}" if tail else "")
        )
        self.actor = actor
        self.exitcode = exitcode
        self.stderr_tail = stderr_tail


class ProtocolError(RuntimeError):
    """A peer sent a malformed frame or a message that is not valid here."""


class TransportClosed(RuntimeError):
    """The channel to a peer closed while a message was still expected."""


class ActorTooSlow(RuntimeError):
    """An actor did not acknowledge a cancel within its bound (never a trio.TooSlowError)."""
