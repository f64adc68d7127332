"""Credentials written into URLs and references never reach output.

A user may put ``user:password@`` into an ``ADD`` URL, a remote build context or an
image reference; Docker and git accept such URLs. Everything kiln prints, logs or
answers goes through :func:`redact`, which turns every ``user:password@`` into
``user:***@`` (and a bare token ``https://TOKEN@host`` into ``https://***@host``).
The real value stays with the request that needs it.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["MASK", "RedactingFilter", "redact"]

MASK = "***"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Compiled on the first text with an ``@``: most commands never redact anything."""
    # scheme://userinfo@ : the password (or a lone token) is masked
    url_userinfo = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/\s@?#]+)@")
    # user:password@host outside a URL (an image reference such as user:pw@registry/x);
    # not name:tag@sha256:... (a reference with both a tag and a digest)
    bare_userinfo = re.compile(
        r"(?<![\w.:/@-])(?P<user>[\w.%+-]+):(?P<password>[^\s@/:]+)@"
        r"(?![a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,})"
    )
    return url_userinfo, bare_userinfo


def _mask_url(match: re.Match[str]) -> str:
    info = match.group("info")
    if MASK in info:
        return match.group(0)
    user, sep, _password = info.partition(":")
    scheme = match.group("scheme")
    if not sep and not scheme.lower().startswith("http"):
        return match.group(0)  # ssh://git@host: a user name, no secret
    masked = f"{user}:{MASK}" if sep else MASK  # https://TOKEN@host: the name is the secret
    return f"{scheme}{masked}@"


def redact(text: str) -> str:
    """``text`` with the secret part of every userinfo masked."""
    if "@" not in text:
        return text
    url_userinfo, bare_userinfo = _patterns()
    text = url_userinfo.sub(_mask_url, text)
    return bare_userinfo.sub(
        lambda m: m.group(0) if m.group("password") == MASK else f"{m.group('user')}:{MASK}@",
        text,
    )


class RedactingFilter:
    """A logging filter that redacts each record's formatted message (debug included). A
    plain class (a handler takes any object with a ``filter`` method): importing this
    module does not import logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's own problem
            return True
        clean = redact(message)
        if clean == message and "%" in message:  # a logged URL: user%3Apass%40host
            import urllib.parse  # start-up: most commands log no percent sign

            decoded = urllib.parse.unquote(message)
            clean = message if redact(decoded) == decoded else redact(decoded)
        if clean != message:
            record.msg, record.args = clean, None
        return True
