"""Blob uploads per the distribution spec: skip, cross-repo mount, monolithic, chunked.

1. ``HEAD`` the blob: present -> nothing to do.
2. With ``mount_from`` in the same registry: ``POST ...?mount=<digest>&from=<repo>``;
   201 means mounted, 202 opens an ordinary upload session.
3. Small blobs: ``PUT <location>?digest=`` with the body streamed.
   Large ones: ``PATCH`` chunks with ``Content-Range``, following ``Location`` each
   time, then an empty ``PUT ...?digest=``.

The bytes come from ``open_stream()``, called again on each retry; a stream that
yields a different size or digest than the descriptor is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from kiln.errors import DigestMismatch, InvalidArgument, Unavailable
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digester
from kiln.registry._lean_httpx import httpx  # httpx without its CLI and trio
from kiln.registry.connection import HostConnection

log = logging.getLogger("kiln.registry")

READ_SIZE = 256 * 1024
OCTET = {"Content-Type": "application/octet-stream"}


class _CountingStream:
    """Reads ``open_stream()`` once, hashing and counting, in bounded pieces."""

    def __init__(self, stream: BinaryIO, desc: Descriptor):
        self.stream = stream
        self.desc = desc
        self.digester = Digester(desc.digest.algorithm)

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if data:
            self.digester.update(data)
            if self.digester.size > self.desc.size:
                raise DigestMismatch(
                    f"blob {self.desc.digest} is larger than its descriptor's {self.desc.size} bytes",
                    str(self.desc.digest),
                )
        return data

    def iter_all(self) -> Iterator[bytes]:
        while data := self.read(READ_SIZE):
            yield data

    def check(self) -> None:
        got = self.digester.digest()
        if self.digester.size != self.desc.size or got != self.desc.digest:
            raise DigestMismatch(
                f"blob {self.desc.digest} ({self.desc.size} bytes) was read as {got} "
                f"({self.digester.size} bytes); the local copy is corrupt",
                str(self.desc.digest),
                str(got),
            )


def _next_location(conn: HostConnection, resp: httpx.Response, what: str) -> str:
    loc = resp.headers.get("location")
    if not loc:
        raise InvalidArgument(f"{what}: the registry sent no upload Location")
    return str(resp.request.url.join(loc)) if resp.request else conn.url(loc)


def _with_digest(location: str, desc: Descriptor) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": str(desc.digest)}))


def try_mount(conn: HostConnection, name: str, desc: Descriptor, source: str) -> str | None:
    """Mount from ``source`` (a repository path); returns None if mounted, else a Location."""
    what = f"mounting blob {desc.digest} from {source} into {conn.domain}/{name}"
    resp = conn.request(
        "POST",
        f"/v2/{name}/blobs/uploads/",
        what,
        ok=(201, 202),
        params={"mount": str(desc.digest), "from": source},
    )
    if resp.status_code == 201:
        return None
    return _next_location(conn, resp, what)


def start_upload(conn: HostConnection, name: str) -> str:
    what = f"starting a blob upload to {conn.domain}/{name}"
    resp = conn.request("POST", f"/v2/{name}/blobs/uploads/", what, ok=(202,))
    return _next_location(conn, resp, what)


def _finish(
    conn: HostConnection,
    location: str,
    desc: Descriptor,
    what: str,
    content: Iterable[bytes] | None,
) -> None:
    headers = {**OCTET, "Content-Length": str(desc.size if content is not None else 0)}
    resp = conn.request(
        "PUT",
        _with_digest(location, desc),
        what,
        ok=(201, 204),
        headers=headers,
        content=content if content is not None else b"",
        retry=False,
    )
    got = resp.headers.get("docker-content-digest")
    if got and got != str(desc.digest):
        raise DigestMismatch(
            f"{what}: the registry stored {got} instead of {desc.digest}", str(desc.digest), got
        )


def upload_monolithic(
    conn: HostConnection, location: str, desc: Descriptor, stream: BinaryIO, what: str
) -> None:
    counter = _CountingStream(stream, desc)
    _finish(conn, location, desc, what, counter.iter_all())
    counter.check()


def upload_chunked(
    conn: HostConnection,
    location: str,
    desc: Descriptor,
    stream: BinaryIO,
    chunk_size: int,
    what: str,
) -> None:
    counter = _CountingStream(stream, desc)
    offset = 0
    while True:
        chunk = counter.read(chunk_size)
        if not chunk:
            break
        end = offset + len(chunk) - 1
        headers = {**OCTET, "Content-Range": f"{offset}-{end}", "Content-Length": str(len(chunk))}
        resp = conn.request(
            "PATCH", location, what, ok=(202, 204), headers=headers, content=chunk, retry=False
        )
        location = _next_location(conn, resp, what)
        offset += len(chunk)
    counter.check()
    _finish(conn, location, desc, what, None)


def push_blob(
    conn: HostConnection,
    name: str,
    desc: Descriptor,
    open_stream: Callable[[], BinaryIO],
    *,
    mount_from: str | None = None,
    chunk_size: int,
    monolithic_max: int,
    check_exists: bool = True,
) -> str:
    """Upload ``desc`` to repository ``name``; returns "exists", "mounted" or "uploaded".

    ``check_exists=False`` skips the ``HEAD`` (the caller has just asked)."""
    what = f"pushing blob {desc.digest} to {conn.domain}/{name}"
    if check_exists:
        head = conn.request("HEAD", f"/v2/{name}/blobs/{desc.digest}", what, allow=(404,))
        if head.status_code == 200:
            return "exists"
    location = None
    if mount_from and mount_from != name:
        location = try_mount(conn, name, desc, mount_from)
        if location is None:
            return "mounted"

    tries = max(1, conn.retry.tries)
    for n in range(1, tries + 1):
        loc = location or start_upload(conn, name)
        location = None  # a retry opens a fresh session
        try:
            with open_stream() as stream:
                if desc.size <= monolithic_max:
                    upload_monolithic(conn, loc, desc, stream, what)
                else:
                    upload_chunked(conn, loc, desc, stream, chunk_size, what)
            return "uploaded"
        except Unavailable:
            if n >= tries:
                raise
            wait = conn.retry.wait_for(n)
            log.info("%s failed, retrying in %.1fs (%d/%d)", what, wait, n, tries)
            conn.retry.sleep(wait)
    raise AssertionError("unreachable")
