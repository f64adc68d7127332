"""A throwaway user a killed test run made (``tests/rootless_user.py``) does not outlive the
next run: the next ``make_user`` removes it, its processes, home and subordinate ranges."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import rootless_user

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

TESTS = Path(__file__).resolve().parents[1]

KILLED_RUN = textwrap.dedent("""
    import os, subprocess, sys
    sys.path.insert(0, sys.argv[1])
    from rootless_user import make_user
    user = make_user(sys.argv[2])
    # a process of the user's that outlives the run, as a rootless kiln may
    proc = subprocess.Popen(["runuser", "-u", user.name, "--", "sleep", "300"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    print(user.name, user.home, proc.pid, flush=True)
    os._exit(0)  # as a killed pytest: no teardown
""")


def _sleeper(runuser_pid: int, uid: int) -> int | None:
    """The left process: the child ``runuser`` started as the user, while it lives."""
    for pid in rootless_user._processes_of(uid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == runuser_pid:
            return pid
    return None


def test_a_user_a_killed_run_left_is_removed_by_the_next_make_user(tmp_path):
    rootless_user.skip_unless_possible()
    res = subprocess.run([sys.executable, "-c", KILLED_RUN, str(TESTS), str(tmp_path / "hold")],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    name, home, runuser_pid = res.stdout.split()
    uid = pwd.getpwnam(name).pw_uid
    deadline = time.monotonic() + 10
    while (sleeper := _sleeper(int(runuser_pid), uid)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeper is not None, "the left user's process never started"

    assert name in rootless_user.remove_dead_users()  # what make_user does first
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    assert not os.path.exists(home)
    for path in (rootless_user.SUBUID, rootless_user.SUBGID):
        assert rootless_user.subid_range(path, name) is None
    deadline = time.monotonic() + 10
    while sleeper in rootless_user._processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sleeper not in rootless_user._processes_of(uid), "the left user's process still runs"
