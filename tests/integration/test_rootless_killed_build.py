"""A rootless kiln (its own user namespace) SIGKILLed mid-RUN leaves its RUN running under
runc, a bundle, a working container, a lease and a scratch directory; the user's next
build removes all of it (runc is reached from the new namespace, the owner PIDs are the
host's), and ``kiln system check`` is clean afterwards."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_images import make_busybox_rootfs  # noqa: E402
from killed_process import started  # noqa: E402
from rootless_user import make_user, remove_user  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def user(tmp_path):
    u = make_user(str(tmp_path / "hold"))
    try:
        make_busybox_rootfs(os.path.join(u.home, "busybox.tar"))
        u.give(u.home)
        u.kiln("import", os.path.join(u.home, "busybox.tar"), "busybox:latest")
        yield u
    finally:
        subprocess.run(["pkill", "-KILL", "-u", str(u.uid)], check=False, timeout=30)
        remove_user(u)


def _pids(uid: int, pattern: str) -> list[int]:
    res = subprocess.run(["pgrep", "-u", str(uid), "-f", pattern], capture_output=True,
                         text=True, timeout=30, check=False)  # fmt: skip
    return sorted(int(p) for p in res.stdout.split())


def _context(user, name: str, text: str) -> str:
    ctx = os.path.join(user.home, name)
    os.makedirs(ctx)
    Path(ctx, "Containerfile").write_text(text)
    user.give(ctx)
    return ctx


def _scratch_dirs(uid: int) -> list[str]:
    return [n for n in os.listdir("/tmp") if n.startswith("kiln-scratch-")
            and os.stat(os.path.join("/tmp", n)).st_uid == uid]  # fmt: skip


def test_the_next_rootless_build_clears_what_a_killed_one_left(user):
    token = "kiln-rl-left-" + secrets.token_hex(4)
    ctx = _context(user, "ctx", f"FROM busybox\nRUN echo started; sleep 300; echo {token}\n")
    with started(
        user.command([sys.executable, "-m", "kiln.cli.main", "build", ctx]), "started"
    ) as proc:
        kilns = _pids(user.uid, "kiln.cli.main build")
        assert kilns, "no kiln process of the user"
        os.kill(kilns[0], signal.SIGKILL)  # the oldest: the waiter outside the namespace
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30  # the kiln inside the namespace goes with its waiter
    while _pids(user.uid, "kiln.cli.main build") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not _pids(user.uid, "kiln.cli.main build")
    assert _pids(user.uid, token), "the RUN outlived the killed kiln (what the sweep is for)"
    assert _scratch_dirs(user.uid)
    assert user.kiln("system", "check", check=False).returncode == 125

    nxt = _context(user, "next", "FROM busybox\nRUN true\n")
    res = user.kiln("build", "-q", nxt)
    assert "removed what a killed kiln left behind" in res.stderr, res.stderr
    deadline = time.monotonic() + 30
    while _pids(user.uid, token) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not _pids(user.uid, token)
    assert _scratch_dirs(user.uid) == []
    res = user.kiln("system", "check", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no problems found" in res.stdout
    assert "No such" not in user.kiln("containers").stdout
