"""kiln.util.process_owner: an owner is alive only while its process runs; a reused PID
or an unreaped (zombie) process is not the owner any more."""

from __future__ import annotations

import subprocess
import time

from kiln.util.process_owner import _start_time, is_alive, this_process


def test_this_process_is_alive():
    assert is_alive(this_process())


def test_another_start_time_is_not_the_owner():
    pid, _, start = this_process().partition(":")
    assert not is_alive(f"{pid}:{int(start) + 1}")


def test_a_zombie_is_not_alive():
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # exited, not reaped yet
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        owner = f"{child.pid}:{_start_time(child.pid)}"
        assert not is_alive(owner)
    finally:
        child.wait()
    assert not is_alive(owner)


def test_an_unreadable_owner_counts_as_alive():
    assert is_alive("not-an-owner")


def test_this_process_reads_proc_once(monkeypatch):
    import kiln.util.process_owner as po

    first = this_process()
    reads = []
    real = po._stat_fields
    monkeypatch.setattr(po, "_stat_fields", lambda pid: reads.append(pid) or real(pid))
    assert [this_process() for _ in range(3)] == [first] * 3
    assert reads == []


def test_a_forked_child_is_its_own_owner():
    import os

    parent = this_process()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own PID and start time, not the parent's remembered one
        os.close(r)
        os.write(w, this_process().encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        child = f.read().decode()
    os.waitpid(pid, 0)
    assert child.split(":")[0] == str(pid)
    assert child != parent
