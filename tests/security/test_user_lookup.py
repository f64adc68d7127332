"""User and group lookup reads only regular files inside the image (issue 14, class 4).

``USER`` (at RUN and at WORKDIR), ``COPY --chown`` and ``kiln run --user`` look up
``/etc/passwd`` and ``/etc/group`` of the container. Each case loads busybox plus a layer
that makes those files hostile: a FIFO (reading it blocks forever), a device node (a host
disk, ``/dev/zero``, a terminal), a directory, a symlink loop, a file over the size cap, or a
symlink (absolute or climbing with ``..``) to a passwd/group file in the victim directory
next to the store that names a user only the victim knows. A case passes when kiln answers
within its timeout with one clear error, or resolves the name in the container's own files
only (the victim's user stays unknown), and nothing outside the store changed.

Failed before the fix: every FIFO case (the build hung until the timeout) and the device
cases (kiln read the device: ``/dev/zero``'s 16 MiB, a block device's first bytes).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass

import pytest

from archive_corpus import DIR, REG, SYM
from hostile_rootfs import (  # noqa: F401  (rootfs_env, victim_env: fixtures)
    ROOT_MARKS,
    RootfsEnv,
    check_clear_error,
    rootfs_env,
    victim_env,
)

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(240)]

CHR, BLK, FIFO = tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE
STEP_TIMEOUT = 45  # a lookup that blocks shows as subprocess.TimeoutExpired
PASSWD = "etc/passwd"
GROUP = "etc/group"


def _node(path: str, kind: int, major: int = 0, minor: int = 0) -> tuple:
    """A FIFO or device node member."""
    return (path, kind, None, {"devmajor": major, "devminor": minor, "mode": 0o644})


@dataclass(frozen=True)
class Case:
    name: str
    members: object  # callable(env) -> list of tar members
    how: str  # "user" (USER + RUN), "workdir" (USER + WORKDIR), "chown", "run"
    spec: str  # the user[:group] asked for
    error: tuple[str, ...] | None  # words of the one Error: line; None: must succeed


FIFO_PW = [_node(PASSWD, FIFO)]
FIFO_GR = [_node(GROUP, FIFO)]
NOT_REGULAR = ("not a regular file",)  # as "it is a FIFO, not a regular file"
UNKNOWN = ("unknown user", "unknown group")

CASES = [
    Case("fifo_passwd_user", lambda e: FIFO_PW, "user", "nobody", NOT_REGULAR),
    Case("fifo_passwd_numeric_user", lambda e: FIFO_PW, "user", "1000", NOT_REGULAR),
    Case("fifo_group_user", lambda e: FIFO_GR, "user", "root:staff", NOT_REGULAR),
    Case("fifo_passwd_chown", lambda e: FIFO_PW, "chown", "nobody", NOT_REGULAR),
    Case("fifo_group_chown", lambda e: FIFO_GR, "chown", "0:nogroup", NOT_REGULAR),
    Case("fifo_passwd_run_user", lambda e: FIFO_PW, "run", "nobody", NOT_REGULAR),
    Case("fifo_passwd_workdir", lambda e: FIFO_PW, "workdir", "nobody", NOT_REGULAR),
    Case("fifo_via_symlink", lambda e: [_node("etc/pw.fifo", FIFO), (PASSWD, SYM, "pw.fifo")],
         "user", "nobody", NOT_REGULAR),
    Case("chardev_zero_passwd", lambda e: [_node(PASSWD, CHR, 1, 5)], "chown", "nobody",
         NOT_REGULAR),
    Case("chardev_tty_passwd", lambda e: [_node(PASSWD, CHR, 5, 0)], "user", "nobody",
         NOT_REGULAR),
    Case("blockdev_group", lambda e: [_node(GROUP, BLK, 7, 0)], "chown", "0:disk", NOT_REGULAR),
    Case("directory_passwd", lambda e: [(PASSWD, DIR, None)], "run", "nobody", NOT_REGULAR),
    Case("symlink_loop_passwd", lambda e: [(PASSWD, SYM, "/etc/passwd")], "user", "nobody",
         ("symbolic links",)),
    Case("oversized_passwd", lambda e: [(PASSWD, REG, b"#" * (17 << 20) + b"\n")], "chown",
         "nobody", ("larger than",)),
    # a symlink to the victim's files: resolved in the container, never the host's
    Case("passwd_abs_host_link", lambda e: [(PASSWD, SYM, str(e.victim / "passwd"))], "user",
         "victimuser", UNKNOWN),
    Case("passwd_rel_host_link", lambda e: [(PASSWD, SYM, e.up_to_victim("passwd"))], "chown",
         "victimuser", UNKNOWN),
    Case("group_abs_host_link", lambda e: [(GROUP, SYM, str(e.victim / "group"))], "chown",
         "0:victimgroup", UNKNOWN),
    Case("group_rel_host_link_run", lambda e: [(GROUP, SYM, e.up_to_victim("group"))], "run",
         "root:victimgroup", UNKNOWN),
    Case("etc_dir_host_link", lambda e: [("etc", SYM, str(e.victim))], "run", "victimuser",
         UNKNOWN),
    # the container's own passwd, reached through in-root links, still works
    Case("passwd_in_root_link", lambda e: [
        ("etc/real-passwd", REG, b"root:x:0:0::/root:/bin/sh\nappuser:x:1234:1234::/:/bin/sh\n"),
        (PASSWD, SYM, "/etc/../etc/real-passwd")], "run", "appuser", None),
]  # fmt: skip


def _outcome(env: RootfsEnv, ref: str, case: Case):
    if case.how == "run":
        cid = env.ok("from", "--pull", "never", ref).strip()
        try:
            return env.kiln("run", "--user", case.spec, cid, "--", "id", timeout=STEP_TIMEOUT)
        finally:
            env.ok("rm", cid)
    steps = {
        "user": f"USER {case.spec}\nRUN id",
        "workdir": f"USER {case.spec}\nWORKDIR /made/by/workdir\nRUN true",
        "chown": f"COPY --chown={case.spec} a.txt /a.txt",
    }[case.how]
    text = f"FROM {ref}\n{steps}\n"
    flags = ("--no-cache", "--layers=false")
    return env.build(text, *flags, files={"a.txt": b"a\n"}, timeout=STEP_TIMEOUT)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_user_lookup_reads_only_regular_files_in_root(victim_env: RootfsEnv, case):  # noqa: F811
    env = victim_env
    ref = env.load("user-" + case.name.replace("_", "-"), *case.members(env))
    res = _outcome(env, ref, case)  # TimeoutExpired here: the lookup blocked
    if case.error is None:
        assert res.returncode == 0, res.stderr.decode()
    else:
        line = check_clear_error(res, *case.error)
        assert "victimuser" not in line or "unknown user" in line
    env.assert_untouched()
