"""Request bodies on disk: spooling uploads and unpacking build contexts safely.

Bodies are never held in memory: they are written in chunks to an anonymous
temporary file in the scratch directory. A build context is then extracted
with :func:`kiln.archive.applier.extract_tar` (no path escapes, no links out
of the directory) into a temporary directory that the caller removes.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import BinaryIO

from starlette.requests import ClientDisconnect, Request

from kiln.errors import Cancelled, InvalidArgument
from kiln.oci import strict_json

log = logging.getLogger("kiln.api")

TAR_TYPES = ("application/x-tar", "application/tar", "application/octet-stream")


MAX_UPLOAD_BYTES = 64 * 1024**3  # far beyond any context or archive; $KILN_MAX_UPLOAD_BYTES


def max_upload_bytes() -> int:
    value = os.environ.get("KILN_MAX_UPLOAD_BYTES", "")
    return int(value) if value.isdigit() else MAX_UPLOAD_BYTES


async def spool_body(request: Request, scratch: str) -> BinaryIO:
    """The whole request body in an anonymous temporary file, rewound; a body over
    ``max_upload_bytes()`` is refused (the file is gone with it)."""
    limit = max_upload_bytes()
    f = tempfile.TemporaryFile(prefix="kiln-upload-", dir=scratch)  # noqa: SIM115
    size = 0
    try:
        async for chunk in request.stream():
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise InvalidArgument(
                        f"the request body is over {limit} bytes (KILN_MAX_UPLOAD_BYTES)"
                    )
                f.write(chunk)
    except ClientDisconnect:
        f.close()
        raise Cancelled("the client disconnected while sending the request body") from None
    except BaseException:
        f.close()
        raise
    f.flush()
    f.seek(0)
    return f


JSON_BODY_MAX = 1 << 20


async def json_body(request: Request, what: str, limit: int = JSON_BODY_MAX) -> dict:
    """A small JSON object body (strict: no duplicate keys, no NaN), at most ``limit`` bytes;
    an empty body is ``{}``."""

    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise InvalidArgument(f"the {what} body is larger than {limit} bytes")
    except ClientDisconnect:
        raise Cancelled("the client disconnected while sending the request body") from None
    if not data.strip():
        return {}
    try:
        value = strict_json.parse(bytes(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the {what} body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"the {what} body must be a JSON object")
    return value


def check_tar_content_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/tar":
        log.info("client sent Content-Type application/tar; treating it as application/x-tar")
    elif ctype and ctype not in TAR_TYPES:
        raise InvalidArgument(
            f'Content-Type "{ctype}" is not supported for a build context: send application/x-tar'
        )


__all__ = ["check_tar_content_type", "json_body", "spool_body"]
