"""Which process owns a piece of in-flight work, and whether it is still alive.

An owner is ``"PID:START"``: the process ID and its start time in clock ticks since boot
(field 22 of ``/proc/PID/stat``), so a PID reused by another process is not mistaken for
the owner. Work a killed kiln left behind (a running RUN, a bundle, a build's working
container) names its owner; the next kiln command clears what a dead owner left.
"""

from __future__ import annotations

import os

__all__ = ["is_alive", "this_process"]


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (the state) on; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    return stat[stat.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


#: this process's owner string, by PID (a forked child has a PID and start time of its own)
_mine: dict[int, str] = {}


def this_process() -> str:
    """This process as an owner string. Read from ``/proc`` once per process: a build step
    names its owner several times (its lease's rows, its RUN bundle), and a process's start
    time never changes."""
    pid = os.getpid()
    owner = _mine.get(pid)
    if owner is None:
        owner = _mine[pid] = f"{pid}:{_start_time(pid) or 0}"
    return owner


def is_alive(owner: str) -> bool:
    """Whether the process ``owner`` names still runs (an unreadable owner counts as alive:
    nothing is cleared on a guess)."""
    pid_text, sep, start = owner.partition(":")
    if not sep or not pid_text.isdigit():
        return True
    fields = _stat_fields(int(pid_text))
    if fields is None or len(fields) <= 19 or fields[19] != start:
        return False
    return fields[0] not in ("Z", "X")  # a zombie has ended: only its exit status is left
