"""The API's unix socket: made with the server's mode, never over a live server's socket.

Its own module because both listeners use it: the HTTP server and the varlink one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from kiln.errors import InvalidArgument, Unavailable

SOCKET_MODE = 0o660


def bind_unix(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise InvalidArgument(
                f"{path} exists and is not a socket; remove it or pick another path"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale
        else:
            raise Unavailable(f"{path}: another server is already listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on unix://{path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    os.chmod(path, SOCKET_MODE)
    sock.set_inheritable(False)
    return sock
