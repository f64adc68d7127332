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
    ├── ProcessFailed     a RUN / run command exited non-zero          (HTTP 500)
    └── Cancelled         the operation was interrupted                (HTTP 499)
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
    http_status = 404


class AlreadyExists(KilnError):
    http_status = 409


class Conflict(KilnError):
    http_status = 409


class InvalidArgument(KilnError):
    http_status = 400


class DigestMismatch(InvalidArgument):
    def __init__(self, message: str, expected: str = "", actual: str = ""):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class Unauthorized(KilnError):
    http_status = 401


class Unavailable(KilnError):
    http_status = 503


class ProcessFailed(KilnError):
    """A process run inside a container exited with a non-zero code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Cancelled(KilnError):
    http_status = 499


__all__ = [
    "AlreadyExists",
    "Cancelled",
    "Conflict",
    "DigestMismatch",
    "InvalidArgument",
    "KilnError",
    "NotFound",
    "ProcessFailed",
    "Unauthorized",
    "Unavailable",
]
