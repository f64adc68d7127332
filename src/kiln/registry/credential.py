"""A registry credential: a username with a password or an identity token, never shown."""

from __future__ import annotations

from dataclasses import field

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass


@dataclass(frozen=True)
class Credential:
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)  # OAuth2 refresh token

    def __repr__(self) -> str:
        secret = "<hidden>" if (self.password or self.identity_token) else "<none>"
        return f"Credential(username={self.username!r}, secret={secret})"

    __str__ = __repr__


def parse_creds(value: str) -> Credential:
    """``user:pass`` as given to ``--creds`` (the password may contain colons)."""
    user, sep, password = value.partition(":")
    if not user:
        raise InvalidArgument("invalid --creds value: expected USERNAME[:PASSWORD] with a username")
    return Credential(user, password if sep else "")
