"""In-memory streams as a run's standard streams: a process needs descriptors, so a stream
without one (``io.BytesIO``, ``io.StringIO``, a test runner's captured ``sys.stdout``) gets
a pipe and a thread that copies between the pipe and the stream while the process runs."""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import IO, Any

from .options import RunOptions

_CHUNK = 64 * 1024


def has_descriptor(stream: object) -> bool:
    """Whether a process can be given ``stream`` as it is: None, a descriptor, or a file."""
    if stream is None or isinstance(stream, int):
        return True
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return True


def _drain(fd: int, stream: IO[Any]) -> None:
    """Copy what the process writes to ``fd`` into ``stream`` (text streams get UTF-8)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = isinstance(stream, io.TextIOBase)
    with open(fd, "rb", buffering=0, closefd=True) as pipe:
        while chunk := pipe.read(_CHUNK):
            stream.write(decoder.decode(chunk) if text else chunk)
        if text:
            stream.write(decoder.decode(b"", final=True))


def _feed(stream: IO[Any], fd: int) -> None:
    """Copy ``stream`` into the process's standard input; a process that exits without
    reading it all ends the copy (the write fails: the pipe has no reader)."""
    with open(fd, "wb", buffering=0, closefd=True) as pipe, contextlib.suppress(OSError):
        while chunk := stream.read(_CHUNK):
            pipe.write(chunk.encode() if isinstance(chunk, str) else chunk)


@contextlib.contextmanager
def bridged(opts: RunOptions) -> Iterator[RunOptions]:
    """``opts`` with each standard stream that has no descriptor replaced by a pipe's end;
    on leaving, the copies are finished (all the process wrote is in the stream) and every
    pipe is closed."""
    names = [n for n in ("stdin", "stdout", "stderr") if not has_descriptor(getattr(opts, n))]
    if not names:
        yield opts
        return
    ends: dict[str, Any] = {}  # stream name -> the descriptor the process gets
    threads: list[threading.Thread] = []
    try:
        for name in names:
            stream = getattr(opts, name)
            read_end, write_end = os.pipe()
            ours, theirs = (write_end, read_end) if name == "stdin" else (read_end, write_end)
            ends[name] = theirs
            copy = _feed if name == "stdin" else _drain
            args = (stream, ours) if name == "stdin" else (ours, stream)
            thread = threading.Thread(target=copy, args=args, name=f"kiln-{name}", daemon=True)
            thread.start()
            threads.append(thread)
        yield replace(opts, **ends)
    finally:
        for fd in ends.values():  # the process has them: EOF for a drain, EPIPE for a feed
            os.close(fd)
        for thread in threads:
            thread.join()
