"""The in-process phase timer ``run_phases.py`` and ``copy_phases.py`` share.

A phase is ``(label, module, attribute)``: the function a build goes through, wrapped
with a timer where it is looked up (a ``from x import f`` binds f in the caller's module:
patch the caller's name). No code of kiln's changes. ``install(phases)`` wraps them all;
``STATS`` then holds, per label, ``[calls, wall seconds, process CPU seconds]`` (the CPU
time of every thread of the process meanwhile). A wrapped function that returns a context
manager has its enter and exit timed too (the body is not). Phases nest, so they do not
add up to the build.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import resource
import sqlite3
import time
from collections import defaultdict

#: label -> [calls, wall seconds, process CPU seconds]
STATS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

SQLITE_COMMITS = "SQLite COMMIT statements"


def timed(label, fn):
    """``fn`` counted and timed under ``label``."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        t, c = time.perf_counter(), time.process_time()
        try:
            result = fn(*a, **kw)
        finally:
            _add(label, t, c, calls=1)
        if hasattr(result, "__enter__") and hasattr(result, "__exit__"):
            return _TimedCM(label, result)
        return result

    return wrapper


def _add(label: str, t: float, c: float, calls: int = 0) -> None:
    s = STATS[label]
    s[0] += calls
    s[1] += time.perf_counter() - t
    s[2] += time.process_time() - c


class _TimedCM:
    """A context manager's enter and exit are timed (the body is not)."""

    def __init__(self, label, cm):
        self.label, self.cm = label, cm

    def __getattr__(self, name):  # e.g. a Popen's .wait/.poll
        return getattr(self.cm, name)

    def __enter__(self):
        t, c = time.perf_counter(), time.process_time()
        try:
            return self.cm.__enter__()
        finally:
            _add(self.label, t, c)

    def __exit__(self, *exc):
        t, c = time.perf_counter(), time.process_time()
        try:
            return self.cm.__exit__(*exc)
        finally:
            _add(self.label, t, c)


class _SubprocessProxy:
    """A module's ``subprocess`` name, with some of its functions timed."""

    def __init__(self, real, label, name):
        self._real = getattr(real, "_real", real)
        self._wrapped = dict(getattr(real, "_wrapped", {}))
        self._wrapped[name] = timed(label, getattr(self._real, name))

    def __getattr__(self, name):
        return self._wrapped.get(name) or getattr(self._real, name)


def install(phases) -> None:
    """Wrap every phase's function (one this kiln lacks is said and skipped)."""
    for label, mod_name, attr in phases:
        mod = importlib.import_module(mod_name)
        owner_path, _, name = attr.rpartition(".")
        owner = mod
        for part in owner_path.split(".") if owner_path else ():
            owner = getattr(owner, part)
        fn = getattr(owner, name, None)
        if fn is None:
            print(f"(no {mod_name}.{attr} in this kiln: phase {label.strip()!r} not timed)")
            continue
        if isinstance(owner, type) and isinstance(owner.__dict__.get(name), staticmethod):
            setattr(owner, name, staticmethod(timed(label, fn)))
        elif owner_path == "subprocess":  # a module-level name in the caller: patch a proxy
            mod.subprocess = _SubprocessProxy(owner, label, name)
        else:
            setattr(owner, name, timed(label, fn))


def count_sqlite_commits() -> None:
    """Count the COMMIT statements of every SQLite connection opened from now on, in
    ``STATS[SQLITE_COMMITS][0]``."""
    connect = sqlite3.connect

    def counting_connect(*a, **kw):
        conn = connect(*a, **kw)

        def trace(sql: str) -> None:
            if sql.strip().upper().startswith(("COMMIT", "END")):
                STATS[SQLITE_COMMITS][0] += 1

        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = counting_connect


def run_cli(kiln_main, argv) -> None:
    """``kiln ARGV`` in this process (``main(argv)`` hands the exit back: no os._exit)."""
    with contextlib.suppress(SystemExit):
        kiln_main(argv)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children so far."""
    return sum(cpu_split())


def cpu_split() -> tuple[float, float]:
    """User + system CPU time so far of this process (every thread) and of its reaped
    children (the runtime: runc and what it ran), apart."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime
