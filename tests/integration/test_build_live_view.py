"""`kiln build` on a terminal: the live view and the summary it leaves, read off a screen.

The build runs on a pseudo-terminal of 80 columns (pexpect); its output is fed to a
screen emulator (pyte) 200 columns wide, so a line drawn wider than the terminal would
show past column 80 instead of being hidden by wrapping.
"""

from __future__ import annotations

import os
import re
import sys
import time

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")

pytestmark = ROOT_MARKS

PARALLEL = """\
FROM busybox AS left
RUN for i in 1 2 3 4 5 6 7 8; do echo left line $i; sleep 0.3; done
RUN echo a second step whose command line is long enough to pass eighty columns by far, surely
FROM busybox AS right
RUN for i in 1 2 3 4 5 6 7 8; do echo right line $i; sleep 0.3; done
FROM busybox
COPY --from=left /etc/passwd /l
COPY --from=right /etc/passwd /r
"""


def _screen_lines(screen) -> list[str]:
    return [line.rstrip() for line in screen.display if line.strip()]


def _run_on_tty(env, *args: str, deadline: float = 120.0):
    """Run kiln on an 80x40 pty; returns (screens seen while running, final screen, exit)."""
    environ = dict(os.environ, KILN_ROOT=env.store.root, TERM="xterm-256color")
    for name in ("CI", "SOURCE_DATE_EPOCH", "NO_COLOR", "COLUMNS", "LINES"):
        environ.pop(name, None)
    child = pexpect.spawn(sys.executable, ["-m", "kiln.cli.main", *args], env=environ,
                          dimensions=(40, 80), encoding="utf-8", timeout=deadline)  # fmt: skip
    screen = pyte.Screen(200, 40)
    stream = pyte.Stream(screen)
    seen: list[list[str]] = []
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            try:
                stream.feed(child.read_nonblocking(65536, timeout=0.25))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                break
            seen.append(_screen_lines(screen))
        else:
            pytest.fail("kiln build did not end in time")
    finally:
        child.close(force=True)
    return seen, _screen_lines(screen), child.exitstatus


def test_live_view_timer_parallel_stages_and_summary(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": PARALLEL})
    seen, final, code = _run_on_tty(build_env, "build", "-t", "live", ctx)
    assert code == 0, final
    every = [line for shot in seen for line in shot] + final
    too_wide = [line for line in every if len(line) > 80]
    assert not too_wide, too_wide
    # a running step with its timer, while the build ran
    assert any(re.search(r"running \d+\.\ds", line) for line in every), seen[-5:]
    # both stages drawn side by side on one line, each with its own running timer
    side = [line for line in every if "[1] left" in line and "[2] right" in line]
    assert side, seen[-5:]
    assert any(len(re.findall(r"running \d+\.\ds", line)) == 2 for line in every)
    # the last lines of the running steps' output
    assert any("│ left line" in line for line in every)
    # waiting stage and steps
    assert any("waiting for left, right" in line for line in every)
    # the summary that stays: steps, cache hits, time per stage, the image
    text = "\n".join(final)
    assert re.search(r"✔ Built in \d+\.\ds: 8 steps, 0 cached, 5 built", text), text
    assert re.search(r"\[1\] left +3 steps +0 cached +\d+\.\ds", text), text
    assert re.search(r"\[2\] right +2 steps", text) and "[3] stage 3" in text
    image_id = build_env.store.resolve_image("localhost/live").id
    assert f"image {image_id[7:19]}  localhost/live:latest" in text
    assert final[-1] == image_id.removeprefix("sha256:")  # stdout: the ID, as plain mode
    # the view itself is gone: no step line is left in the final screen
    assert not any("running" in line or "waiting" in line for line in final)

    # again: every step that can be cached is, and the summary says so
    seen, final, code = _run_on_tty(build_env, "build", "-t", "live", ctx)
    assert code == 0
    assert re.search(r"8 steps, 5 cached, 0 built", "\n".join(final)), final


def test_live_view_failure_leaves_the_output_and_the_error(build_env):  # noqa: F811
    ctx = build_env.context_dir(
        files={"Containerfile": "FROM busybox\nRUN echo before-failing; exit 7\n"}
    )
    _seen, final, code = _run_on_tty(build_env, "build", ctx)
    assert code == 7
    text = "\n".join(final)
    assert "✖ Failed after" in text and "step 2: RUN echo before-failing; exit 7" in text
    assert "│ before-failing" in text
    assert final[-1].startswith("Error: building at STEP")


def test_explain_on_a_terminal_and_in_plain_lines(build_env):  # noqa: F811
    import subprocess

    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\nCOPY a /a\n", "a": "1"})
    build_env.build(ctx, "FROM busybox\nCOPY a /a\n")
    with open(os.path.join(ctx, "a"), "w") as f:
        f.write("2")
    _seen, final, code = _run_on_tty(build_env, "build", "--explain", ctx)
    assert code == 0
    assert "miss [1] 2 COPY a /a: 1 file changed (a)" in "\n".join(final)
    environ = dict(os.environ, KILN_ROOT=build_env.store.root)
    with open(os.path.join(ctx, "a"), "w") as f:
        f.write("3")
    plain = subprocess.run([sys.executable, "-m", "kiln.cli.main", "build", "--explain", ctx],
                           capture_output=True, text=True, env=environ, timeout=120)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    at = lines.index("STEP 2/2: COPY a /a")
    assert lines[at + 1] == "--> Cache miss: COPY a /a: 1 file changed (a)"
    # without --explain, plain output is what it always was: no such line
    with open(os.path.join(ctx, "a"), "w") as f:
        f.write("4")
    plain = subprocess.run([sys.executable, "-m", "kiln.cli.main", "build", ctx],
                           capture_output=True, text=True, env=environ, timeout=120)  # fmt: skip
    assert not [line for line in plain.stdout.splitlines() if "Cache miss" in line or not line]
