"""kiln's one error tree.

Every error a user can cause is a ``KilnError`` whose message says what was
wrong and, where it helps, what to do. Front ends map the classes to exit
codes and HTTP statuses; nothing else should be raised for user mistakes.

    KilnError
    ├── NotFound          unknown image, container, blob, file, tag   (HTTP 404)
    ├── AlreadyExists     a name or object that must be new            (HTTP 409)
    ├── Conflict          in use, depended on, locked                  (HTTP 409)
    ├── InvalidArgument   bad reference, flag, Dockerfile, archive     (HTTP 400)
    │   └── DigestMismatch  content differs from its digest or size    (HTTP 400)
    ├── Unauthorized      registry refused the credentials             (HTTP 401)
    ├── Unavailable       a server, runtime or binary cannot be used   (HTTP 503)
    │   └── NoSpace         the store's or an output's disk (or quota) is full (HTTP 507)
    ├── ProcessFailed     a RUN / run command exited non-zero          (HTTP 500)
    └── Cancelled         the operation was interrupted                (HTTP 499)

Beside the tree, ``Interrupted`` is a ``KeyboardInterrupt``: a signal that stops kiln
(SIGTERM, or SIGINT while a RUN waits) unwinds every operation as a Ctrl-C does, cleaning
up on the way out, and the CLI exits with 128 + the signal's number.
"""

from __future__ import annotations


class KilnError(Exception):
    """Base of every error kiln raises on purpose."""

    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(KilnError):
    """No such image, container, blob, file or tag."""

    http_status = 404


class AlreadyExists(KilnError):
    """A name or object that must be new exists already."""

    http_status = 409


class Conflict(KilnError):
    """The object is in use, depended on or locked."""

    http_status = 409


class InvalidArgument(KilnError):
    """A bad reference, option, Dockerfile or archive."""

    http_status = 400


class DigestMismatch(InvalidArgument):
    """Content differs from its digest or size: ``expected`` and ``actual`` say how."""

    def __init__(self, message: str, expected: str = "", actual: str = ""):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class Unauthorized(KilnError):
    """A registry refused the credentials (or asked for some)."""

    http_status = 401


class Unavailable(KilnError):
    """A server, runtime, binary or the store cannot be used (``errno`` when a system call
    said so)."""

    http_status = 503
    errno: int | None = None  # the system call's errno, when one caused it


class NoSpace(Unavailable):
    """No space left on the device (or quota) kiln writes to; nothing half-written is kept."""

    http_status = 507

    @classmethod
    def on(cls, where: str) -> NoSpace:
        return cls(
            f"no space left on device ({where}): free some (kiln rm -a, kiln image prune -a, "
            "kiln builder prune) and try again"
        )


def is_no_space(exc: BaseException) -> bool:
    """An OSError of a full disk or quota, or SQLite's "database or disk is full"."""
    import errno
    import sqlite3

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)


def translated(exc: BaseException) -> BaseException:
    """``exc`` as the kiln error a user should see, when it is a known system condition
    (a full disk); else ``exc`` itself. Front ends call it before treating an error as a bug."""
    if not isinstance(exc, KilnError) and is_no_space(exc):
        where = getattr(exc, "filename", None) or "kiln's store"
        return NoSpace.on(str(where))
    return exc


class ProcessFailed(KilnError):
    """A process run inside a container exited with a non-zero code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Cancelled(KilnError):
    """The operation was cancelled or interrupted; nothing of it is left behind."""

    http_status = 499


class Interrupted(KeyboardInterrupt):
    """Signal ``signum`` stopped kiln (see the module)."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


def raise_interrupted(signum: int, _frame: object) -> None:
    """A signal handler: stop kiln as a Ctrl-C does (see the module)."""
    raise Interrupted(signum)


__all__ = [
    "AlreadyExists",
    "Cancelled",
    "Conflict",
    "DigestMismatch",
    "Interrupted",
    "InvalidArgument",
    "KilnError",
    "NoSpace",
    "NotFound",
    "ProcessFailed",
    "Unauthorized",
    "Unavailable",
    "is_no_space",
    "raise_interrupted",
    "translated",
]
