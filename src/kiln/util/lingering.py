"""Background jobs on threads that stay for the next job.

A build step hands work to a thread (a RUN's output to pump, an old overlay work dir to
delete). ``threading.Thread.start`` waits until the new thread has a CPU and the GIL:
~0.05 ms on an idle machine, 1-4 ms per start on a busy one, every step. ``Lingering``
keeps its threads after a job, idle for ``idle`` seconds, and ``submit`` never waits for
one to be scheduled: it queues the job and wakes an idle thread, or starts one when every
thread is busy (jobs never wait for each other). ``close`` waits for the jobs and ends the
threads, so a command's exit finds none (the CLI ends without teardown only then).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kiln.util.held_signals import signals_held


class Job:
    """One submitted job: ``wait`` for its end; ``error`` is what it raised, if anything."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.error: BaseException | None = None
        self._done = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has ended (within ``timeout`` seconds)."""
        return self._done.wait(timeout)

    def _call(self) -> None:
        try:
            self.fn(*self.args)
        except BaseException as exc:  # the submitter reads it; the thread goes on
            self.error = exc


class Lingering:
    """Run jobs on daemon threads named ``name`` that wait ``idle`` seconds for the next."""

    def __init__(self, name: str, idle: float = 2.0) -> None:
        self.name = name
        self.idle = idle
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[Job] = deque()
        self._threads: list[threading.Thread] = []
        self._free = 0  # threads not running a job: each takes the next one queued
        self._closing = False
        self._pid = os.getpid()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Job:
        """Run ``fn(*args)`` on one of the threads; returns at once."""
        job = Job(fn, args)
        # a Ctrl-C between counting a new thread and starting it would leave one counted
        # that never runs: the jobs queued next would wait for it forever
        with signals_held(), self._cond:
            if self._pid != os.getpid():  # a fork has none of the parent's threads
                self._jobs, self._threads, self._free = deque(), [], 0
                self._pid = os.getpid()
            self._jobs.append(job)
            if len(self._jobs) > self._free:  # every free thread has a job already
                thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._threads.append(thread)
                self._free += 1
                thread.start()
            else:
                self._cond.notify()
        return job

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                while not self._jobs:
                    if self._closing or not self._cond.wait(self.idle) and not self._jobs:
                        self._free -= 1  # closing, or idle long enough
                        self._threads.remove(me)
                        return
                job = self._jobs.popleft()
                self._free -= 1
            job._call()
            with self._cond:  # free again before its submitter hears: its next job is ours
                self._free += 1
            job._done.set()

    def close(self, timeout: float | None = None) -> None:
        """Wait for every job submitted and for the threads to end, at most ``timeout``
        seconds in all (a job still running then is left to its daemon thread). The
        threads come back with the next ``submit``."""
        with self._cond:
            if self._pid != os.getpid():
                return
            self._closing = True
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            with self._cond:
                self._closing = False

    def threads(self) -> list[threading.Thread]:
        """The threads alive now (for tests and checks)."""
        with self._cond:
            return list(self._threads)
