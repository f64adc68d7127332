"""Fetch a URL into a file, bounded in size and time: ``ADD <url>``, ``kiln add <url>``
and remote build contexts (stdlib ``urllib``; registries have their own client).

One pass: the bytes are hashed (sha256) as they are written. A server that answers
404 is ``NotFound``; one that cannot be reached, breaks off or sends too slowly (see
:mod:`kiln.util.pace`) is ``Unavailable``; a body over ``max_bytes`` is refused and
nothing is kept. Messages start with ``what`` and never show a ``user:password@``.
Under a cancel flag (``kiln.util.cancel``: a Ctrl-C reaching a build's stage thread, an
API client that went away) the connection is shut down once it is set, and the download
ends with ``Cancelled`` at once, not at the read timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

from kiln.errors import InvalidArgument, NotFound, Unavailable
from kiln.util.cancel import cancelled_error, when_cancelled
from kiln.util.lazy_dataclass import dataclass
from kiln.util.pace import DEFAULT_GRACE, DEFAULT_MIN_RATE, Pace
from kiln.util.redact import redact

__all__ = ["MAX_DOWNLOAD_BYTES", "Downloaded", "download"]

_CHUNK = 1 << 20
MAX_DOWNLOAD_BYTES = 16 * 1024**3  # far beyond any sane ADD; $KILN_MAX_DOWNLOAD_BYTES
TIMEOUT = 120.0  # per read; the whole transfer is bounded by Pace's minimum rate


@dataclass(frozen=True)
class Downloaded:
    path: str
    sha256: str  # hex
    size: int
    last_modified: float | None  # the Last-Modified header, as epoch seconds


def max_download_bytes() -> int:
    value = os.environ.get("KILN_MAX_DOWNLOAD_BYTES", "")
    return int(value) if value.isdigit() else MAX_DOWNLOAD_BYTES


def download(
    url: str,
    path: str,
    *,
    what: str,
    max_bytes: int | None = None,
    timeout: float = TIMEOUT,
    min_rate: float = DEFAULT_MIN_RATE,
    grace: float = DEFAULT_GRACE,
) -> Downloaded:
    """Write the body of ``url`` (http/https) to the new file ``path``."""
    import email.utils
    import http.client
    import urllib.error  # here, not at the top: http.client, ssl and email cost ~12 ms
    import urllib.request

    what = redact(what)
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidArgument(f"{what}: only http and https URLs can be downloaded")
    limit = max_download_bytes() if max_bytes is None else max_bytes
    pace = Pace(what, min_rate=min_rate, grace=grace)
    digest = hashlib.sha256()
    size = 0
    request = urllib.request.Request(url, headers={"User-Agent": "kiln"})
    opened = _Sockets()  # the connections', to shut down on a cancel
    flag = None
    try:
        with (
            when_cancelled(opened.shut) as flag,
            _open_within(request, timeout, opened) as resp,
            open(path, "xb") as out,
        ):
            while chunk := resp.read1(_CHUNK):  # what has arrived: the pace sees drips
                size += len(chunk)
                if size > limit:
                    raise InvalidArgument(f"{what}: the download is over the {limit}-byte limit")
                pace.check(size)
                digest.update(chunk)
                out.write(chunk)
            modified = resp.headers.get("Last-Modified")
            if flag is not None and flag.is_set():  # the shut-down socket read as the end
                raise cancelled_error(flag)
            if resp.length:  # what Content-Length still owes: read1 took the close as the end
                raise Unavailable(
                    f"{what}: cannot download it: the server ended the body after {size} "
                    f"of its {size + resp.length} bytes"
                )
    except urllib.error.HTTPError as exc:
        _discard(path)
        if flag is not None and flag.is_set():
            raise cancelled_error(flag) from None
        if exc.code == 404:
            raise NotFound(f"{what}: the server answered {exc.code} {exc.reason}") from None
        raise Unavailable(f"{what}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        _discard(path)
        if flag is not None and flag.is_set():
            raise cancelled_error(flag) from None
        reason = redact(str(getattr(exc, "reason", exc)))
        if isinstance(exc, http.client.IncompleteRead):  # the connection ended mid-chunks
            reason = f"the server ended the body after {size} bytes"
        raise Unavailable(f"{what}: cannot download it: {reason}") from None
    except BaseException:
        _discard(path)
        raise
    mtime = None
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
    return Downloaded(path, digest.hexdigest(), size, mtime)


def _open_within(request: Any, timeout: float, opened: _Sockets) -> Any:
    """``urlopen`` whose response headers (redirects included) must be complete within
    ``timeout``: the socket timeout is per read, so a server dripping its header lines
    would hold the download forever. At the deadline the connections (each socket is
    added to ``opened``) are shut down."""
    import http.client
    import threading
    import urllib.request

    class Plain(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            opened.add(self.sock)

    class Secure(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            opened.add(self.sock)

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(Plain, req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(Secure, req)  # the default context, as urlopen's

    expired = threading.Event()

    def expire() -> None:
        expired.set()
        opened.shut()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    spent = OSError(f"no complete response headers after {timeout:g} s")
    try:
        resp = urllib.request.build_opener(Http, Https).open(request, timeout=timeout)
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise spent from exc
        raise
    finally:
        timer.cancel()
    if expired.is_set():  # the shut-down socket read as the end of the headers
        resp.close()
        raise spent
    return resp


class _Sockets:
    """A download's connections, which another thread may shut down (a deadline, a
    cancel): every wait on them ends at once, a blocked read returns end-of-file. One
    opened after the shut-down is shut down as it is added."""

    def __init__(self) -> None:
        self._socks: list[Any] = []
        self._shut = False

    def add(self, sock: Any) -> None:
        self._socks.append(sock)
        if self._shut:  # the shut-down ran while it connected
            self._shutdown(sock)

    def shut(self) -> None:
        self._shut = True  # before the loop: a socket added meanwhile sees it
        for sock in list(self._socks):
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: Any) -> None:
        import socket

        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
