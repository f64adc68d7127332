"""Waits of the tests on a state they can observe (no sleeps as synchronisation)."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

WAIT_SECONDS = 120.0  # each wait ends on its condition, well before this


def unread(s: socket.socket) -> int:
    """The bytes that have arrived on ``s`` and are not read yet."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def wait_for(what: str, condition: Callable[..., Any], *args: Any) -> None:
    """Until ``condition(*args)`` holds; fails naming ``what`` after ``WAIT_SECONDS``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition(*args):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)
