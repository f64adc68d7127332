"""In-memory streams as a run's standard streams: a process needs descriptors, so a stream
without one (``io.BytesIO``, ``io.StringIO``, a test runner's captured ``sys.stdout``) gets
a pipe and a thread that copies between the pipe and the stream while the process runs."""

from __future__ import annotations

import codecs
import contextlib
import functools
import io
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import IO, Any

from .options import RunOptions

_CHUNK = 64 * 1024
# After the process has exited, how long a child it left holding the pipe may still write:
# past that the copy takes what the pipe holds and ends (a daemon would keep it forever).
_GRACE = 1.0


def is_binary(stream: object) -> bool:
    """Whether ``stream`` takes bytes; any other stream is written text."""
    if isinstance(stream, io.RawIOBase | io.BufferedIOBase):
        return True
    mode = getattr(stream, "mode", None)
    return isinstance(mode, str) and "b" in mode


class _Copy(threading.Thread):
    """A copy between a pipe and a stream; what it raised is kept for the caller."""

    def __init__(self, name: str, work: Callable[[], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as e:  # re-raised by bridged once the run is over
            self.error = e


def _drain(fd: int, stream: IO[Any], stop: int) -> None:
    """Copy what the process writes to ``fd`` into ``stream`` until the pipe ends, or until
    ``stop`` is readable and the pipe holds nothing more. A stream that fails a write gets
    nothing more, but the pipe is still read (a writer to a closed pipe dies of SIGPIPE)."""
    decoder = None if is_binary(stream) else codecs.getincrementaldecoder("utf-8")("replace")
    failed: Exception | None = None

    def give(chunk: bytes, final: bool = False) -> None:
        nonlocal failed
        if failed is not None:
            return
        try:
            stream.write(chunk if decoder is None else decoder.decode(chunk, final=final))
        except Exception as e:
            failed = e

    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(stop, select.POLLIN)
    try:
        while True:
            stopping = any(ready == stop for ready, _ in poller.poll())
            while True:
                try:
                    chunk = os.read(fd, _CHUNK)
                except BlockingIOError:
                    break
                if not chunk:
                    stopping = True
                    break
                give(chunk)
            if stopping:
                break
    finally:
        os.close(fd)
    if decoder is not None:
        give(b"", final=True)
    if failed is not None:
        raise failed


def _feed(stream: IO[Any], fd: int, stop: int) -> None:
    """Copy ``stream`` into the process's standard input; a process that exits without
    reading it all ends the copy (the write fails: the pipe has no reader), as does ``stop``
    being readable (a child the process left holds the pipe but does not read it)."""
    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.register(stop, select.POLLIN)
    try:
        while chunk := stream.read(_CHUNK):
            data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
            while data:
                if any(ready == stop for ready, _ in poller.poll()):
                    return
                try:
                    data = data[os.write(fd, data) :]
                except BlockingIOError:
                    continue
                except OSError:  # EPIPE: nobody reads it anymore
                    return
    finally:
        os.close(fd)


def _finish(copies: list[_Copy], stop: int) -> None:
    """Wait for the copies: those still running after the grace are told to stop."""
    deadline = time.monotonic() + _GRACE
    for copy in copies:
        copy.join(max(0.0, deadline - time.monotonic()))
    if any(copy.is_alive() for copy in copies):
        os.write(stop, b"x")
    for copy in copies:
        copy.join()


@contextlib.contextmanager
def bridged(opts: RunOptions) -> Iterator[RunOptions]:
    """``opts`` with each standard stream that has no descriptor replaced by a pipe's end;
    on leaving (the process has exited), the copies are finished: all the process wrote is
    in the stream, every pipe is closed, and what a stream raised is raised."""
    names = opts.streams_without_descriptor()
    if not names:
        yield opts
        return
    ends: dict[str, Any] = {}  # stream name -> the descriptor the process gets
    copies: list[_Copy] = []
    stop_read, stop_write = os.pipe()
    try:
        for name in names:
            stream = getattr(opts, name)
            read_end, write_end = os.pipe()
            if name == "stdin":
                ends[name] = read_end
                work = functools.partial(_feed, stream, write_end, stop_read)
            else:
                ends[name] = write_end
                work = functools.partial(_drain, read_end, stream, stop_read)
            copy = _Copy(f"kiln-{name}", work)
            copy.start()
            copies.append(copy)
        yield replace(opts, **ends)
    finally:
        for fd in ends.values():  # the process has them: EOF for a drain, EPIPE for a feed
            os.close(fd)
        _finish(copies, stop_write)
        os.close(stop_read)
        os.close(stop_write)
    for copy in copies:
        if copy.error is not None:
            raise copy.error
