"""Send Ctrl-C at every point of kiln's code where a real one can land, one trial per point.

CPython runs a signal's handler only at some instructions: after a call returns (``CALL``),
at a loop's backward jump, on entering a function. A ``KeyboardInterrupt`` raised at any
other instruction (a line's start, the ``__exit__`` of a ``with``) is one no user could
cause. The trials raise it just after each call made by code under ``kiln/`` in this
thread (the N-th such point, counting from the call's start), where a Ctrl-C would raise
it, which covers loops too (their bodies call). Where the instruction after a call has
another handler than the call (``return f()`` in a ``try``: the next one starts the
``finally``'s copy for the normal way out), it is raised by the call instead, as a real one
is: from the callee's return (a ``sys.setprofile`` event: ``return`` of a Python callee,
``c_return`` of a C one, whose result is then dropped). It is a real SIGINT
(``raise_signal``), so a ``util.held_signals`` block records it and raises it when the
block ends, as it would a user's.
"""

from __future__ import annotations

import dis
import gc
import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

import kiln

KILN = os.path.dirname(kiln.__file__) + os.sep
_CALLS = {dis.opmap[name] for name in ("CALL", "CALL_FUNCTION_EX") if name in dis.opmap}
_points_of: dict[CodeType, tuple[frozenset[int], frozenset[int]]] = {}
#: where the last trial sent its Ctrl-C (``kiln/...py:line``), for a failure to name
sent_at = ""


def _handler(entries: list[Any], offset: int) -> int | None:
    """Where an exception raised at ``offset`` goes (the ``except``/``finally`` covering it)."""
    return next((e.target for e in entries if e.start <= offset < e.end), None)


def _points(code: CodeType) -> tuple[frozenset[int], frozenset[int]]:
    """The offsets of ``code``'s instructions that follow a call the same handler covers
    (a Ctrl-C raised there is one raised by the call), and those of the calls whose next
    instruction another handler covers (the Ctrl-C must come out of the call itself)."""
    points = _points_of.get(code)
    if points is None:
        ins = list(dis.get_instructions(code))
        entries = dis.Bytecode(code).exception_entries
        pairs = [(a, b) for a, b in itertools.pairwise(ins) if a.opcode in _CALLS]
        same = {
            a.offset for a, b in pairs if _handler(entries, a.offset) == _handler(entries, b.offset)
        }
        points = (
            frozenset(b.offset for a, b in pairs if a.offset in same),
            frozenset(a.offset for a, _ in pairs if a.offset not in same),
        )
        _points_of[code] = points
    return points


def _ctrl_c_from_call(caller: Any, send: Callable[[Any], None]) -> Callable[..., Any]:
    """A profile function that calls ``send`` as the call ``caller`` is making returns:
    at the ``return`` of its Python callee (the first frame it starts) or the ``c_return``
    of its C one; an exception raised there comes out of the call. A call that starts
    neither (a C type's, a generator's) sends nothing: the next instruction of ``caller``
    stops it."""
    callee: list[Any] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if not callee:
            if event == "call" and frame.f_back is caller or event == "c_call" and frame is caller:
                callee.append(frame if event == "call" else None)
        elif (event == "return" and frame is callee[0]) or (
            event == "c_return" and callee[0] is None and frame is caller
        ):
            sys.setprofile(None)
            del arg  # the traceback keeps this frame: the call's result must go with the call
            send(caller)
        elif event == "c_exception" and callee[0] is None and frame is caller:
            sys.setprofile(None)  # the call raised: a signal is not checked then

    return profile


def ctrl_c_at_point(
    n: int, call: Callable[[], Any], within: tuple[str, ...] = (KILN,)
) -> tuple[bool, int]:
    """Run ``call()`` with a Ctrl-C at the ``n``-th point after a call in kiln's code (in
    the files whose names start with one of ``within``: a call that passes thousands of
    points is tried where it is under test); returns whether a ``KeyboardInterrupt`` came
    out of it and how many points it passed."""
    global sent_at
    seen = 0
    sent_at = ""
    armed: list[Any] = []  # the frame whose call is to raise it

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal seen
        if event == "call":
            if not frame.f_code.co_filename.startswith(within):
                return None
            frame.f_trace_lines = False
            frame.f_trace_opcodes = True
            return trace
        if event == "opcode":
            if armed and armed[0] is frame:
                armed.clear()
                sys.setprofile(None)  # the call started no callee to raise from
            after_calls, at_calls = _points(frame.f_code)
            if frame.f_lasti in after_calls:
                seen += 1
                if seen == n:
                    send(frame)
            elif frame.f_lasti in at_calls:
                seen += 1
                if seen == n:
                    armed.append(frame)
                    sys.setprofile(_ctrl_c_from_call(frame, send))
        return trace

    def send(frame: Any) -> None:
        global sent_at
        armed.clear()
        sent_at = f"{os.path.relpath(frame.f_code.co_filename, KILN)}:{frame.f_lineno}"
        signal.raise_signal(signal.SIGINT)  # Python's handler raises it here

    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.settrace(trace)
        try:
            call()
        finally:
            sys.settrace(None)
            sys.setprofile(None)
    except KeyboardInterrupt:
        return True, seen
    finally:
        signal.signal(signal.SIGINT, previous)
    return False, seen


def every_point(
    call: Callable[[], Any],
    limit: int = 20_000,
    within: tuple[str, ...] = (KILN,),
    every: int = 1,
) -> Iterator[tuple[int, bool]]:
    """Trials 1, 2, ... of ``ctrl_c_at_point`` until one sends nothing (the call passed
    fewer points): yields each point's number and whether the call was interrupted. The caller
    checks what the trial left and sets the next one up before asking for it. ``within``:
    as ``ctrl_c_at_point``'s; ``every``: a trial at every so many points only (1, 1 + every,
    ...), for a call too long to try at each."""
    for n in range(1, limit + 1, every):
        interrupted, seen = ctrl_c_at_point(n, call, within)
        if seen < n:
            return
        yield n, interrupted
    raise AssertionError(f"the call still passed more than {limit} points")


def open_fds() -> dict[str, str]:
    """This process's open descriptors and what each is."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the listing's own, closed
    return fds


def _opened_since(before: dict[str, str], ignored: Callable[[str], bool]) -> list[str]:
    """The descriptors open now and not in ``before``: those left open, and those only a
    garbage collection closes (a dropped object in a cycle holds them: a long-lived process
    keeps them until its next collection), but for those on a file ``ignored`` names.
    A collection only when one is found: ~0.1 s."""

    def open_now() -> dict[str, str]:
        return {fd: path for fd, path in open_fds().items() if not ignored(path)}

    then = open_now()
    if not then.keys() - before.keys():
        return []
    gc.collect()
    now = open_now()
    left = [f"fd {fd} left open: {now[fd]}" for fd in sorted(now.keys() - before, key=int)]
    collected = sorted(then.keys() - before.keys() - now.keys(), key=int)
    return left + [f"fd {fd} closed only by gc: {then[fd]}" for fd in collected]


def assert_whole_at_every_point(
    set_up: Callable[[], Any],
    call: Callable[[], Any],
    reset: Callable[[], Any],
    left_behind: Callable[[], list[str]],
    set_right: Callable[[], Any],
    within: tuple[str, ...] = (KILN,),
    fds: bool = False,
    every: int = 1,
    fds_ignored: Callable[[str], bool] = lambda path: False,
) -> None:
    """``set_up()`` then ``call()`` once whole first (the modules it imports on first use
    imported: an import a Ctrl-C stops is done again by the next trial, whose points would
    then count the module's own, and points of the call would go untried), then a trial at
    every point, each from ``reset()`` and ``set_up()``. After each, ``left_behind()`` must
    list nothing (else ``set_right()`` clears it, so the next trial shows its own), and with
    ``fds``, once ``reset()`` has dropped what the trial made (a snapshot this process
    holds a descriptor on while it is there), no descriptor the trial opened may be open
    but on a file ``fds_ignored`` names (given its path); all failures are reported
    together. ``within``, ``every``: as ``every_point``'s."""
    set_up()
    call()
    reset()
    before = open_fds() if fds else {}
    set_up()
    failures = []
    trials = 0
    for n, interrupted in every_point(call, within=within, every=every):
        trials += 1
        problems = left_behind()
        if problems:
            set_right()
        reset()
        if fds:
            problems += _opened_since(before, fds_ignored)
            before = open_fds()  # a leak is reported once, not by every later trial
        if problems:
            how = "interrupted" if interrupted else "finished"
            failures.append(f"point {n} at {sent_at} ({how}): {problems}")
        set_up()
    assert trials > 5, "the call ran no kiln code: the trials never reached it"
    assert not failures, "\n".join(failures)
    assert left_behind() == [], "after the last run, not interrupted"
