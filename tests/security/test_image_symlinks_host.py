"""An image's own symlinks never steer a host write (issue 14, class 3).

Each case loads busybox plus a hostile layer whose symlinks point at a victim directory of
canary files next to the store, by absolute host path or by a ``../../..`` climb: ``/dev``,
``/dev/*``, ``/proc``, ``/sys``, ``/etc/hosts``, ``/etc/resolv.conf``, ``/etc/hostname``, the
working directory, and the targets of bind, cache, secret and tmpfs mounts. Then RUN steps
(``kiln build``, runc and chroot isolation), ``kiln run`` and ``kiln mount`` work on it. A case
passes when kiln refuses with one clear error, or runs with every write kept inside the
container, and the victim (listing, contents, modes, mtimes) and everything else outside the
store are unchanged. Every kiln call has a timeout.

Failed before the fix: ``/dev`` as a symlink (absolute or relative; runc made ``fd``,
``stdin``, ``stdout``, ``stderr`` and ``ptmx`` in the victim) and the mountpoint clean-up after
``kiln run --mount`` (it removed an empty host directory through a symlink the run planted).
"""

from __future__ import annotations

from collections.abc import Callable
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

Members = Callable[[RootfsEnv], list[tuple]]
REFUSED_LINK = ("symbolic link", "not a directory")


@dataclass(frozen=True)
class Case:
    name: str
    members: Members
    # "build": Dockerfile lines after FROM; "run": the command for ``kiln run``
    how: str
    what: tuple[str, ...]
    flags: tuple[str, ...] = ()
    error: tuple[str, ...] | None = None  # words of the one Error: line; None: must succeed
    config: dict | None = None


def _v(env: RootfsEnv, name: str = "") -> str:
    return str(env.victim / name) if name else str(env.victim)


CONFIG = {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]}

CASES = [
    # the system mountpoints: kiln mounts its own there and refuses to follow a link for them
    Case("dev_abs_run", lambda e: [("dev", SYM, _v(e))], "run", ("true",), error=REFUSED_LINK),
    Case("dev_rel_build", lambda e: [("dev", SYM, e.up_to_victim())], "build", ("RUN true",),
         error=REFUSED_LINK),
    Case("dev_abs_chroot", lambda e: [("dev", SYM, _v(e))], "build", ("RUN true",),
         flags=("--isolation", "chroot"), error=REFUSED_LINK),
    Case("dev_chained_links", lambda e: [("dev", SYM, "devlink"), ("devlink", SYM, _v(e))], "run",
         ("true",), error=REFUSED_LINK),
    Case("proc_abs", lambda e: [("proc", SYM, _v(e))], "run", ("true",), error=REFUSED_LINK),
    Case("sys_abs", lambda e: [("sys", SYM, _v(e))], "build", ("RUN true",), error=REFUSED_LINK),
    Case("sys_rel_chroot", lambda e: [("sys", SYM, e.up_to_victim())], "run", ("true",),
         flags=("--isolation", "chroot"), error=REFUSED_LINK),
    Case("dev_is_a_file", lambda e: [("dev", REG, b"x")], "run", ("true",), error=REFUSED_LINK),
    # entries under /dev are hidden by kiln's own /dev
    Case("dev_entries", lambda e: [
        ("dev", DIR, None), ("dev/null", SYM, _v(e, "canary.txt")), ("dev/pts", SYM, _v(e)),
        ("dev/shm", SYM, e.up_to_victim()), ("dev/console", SYM, _v(e, "canary.txt")),
        ("dev/ptmx", SYM, _v(e, "pwned-ptmx")), ("dev/fd", SYM, _v(e)),
    ], "build", ("RUN echo pwned > /dev/null && echo pwned > /dev/shm/pwned && ls /dev/pts",)),
    Case("dev_entries_chroot", lambda e: [
        ("dev", DIR, None), ("dev/null", SYM, _v(e, "canary.txt")), ("dev/shm", SYM, _v(e)),
    ], "run", ("sh", "-c", "echo pwned > /dev/null; echo pwned > /dev/shm/pwned"),
        flags=("--isolation", "chroot")),
    # the per-run /etc files are kiln's, mounted in-root
    Case("etc_hosts_abs", lambda e: [("etc/hosts", SYM, _v(e, "hosts"))], "build",
         ("RUN grep -q localhost /etc/hosts && echo pwned >> /etc/hosts",)),
    Case("etc_hosts_dangling_chroot", lambda e: [("etc/hosts", SYM, _v(e, "pwned-hosts"))],
         "build", ("RUN grep -q localhost /etc/hosts && echo pwned >> /etc/hosts",),
         flags=("--isolation", "chroot")),
    Case("etc_resolv_rel", lambda e: [("etc/resolv.conf", SYM, e.up_to_victim("canary.txt"))],
         "run", ("sh", "-c", "grep -q nameserver /etc/resolv.conf; echo x > /etc/resolv.conf")),
    Case("etc_hostname_abs", lambda e: [("etc/hostname", SYM, _v(e, "canary.txt"))], "run",
         ("sh", "-c", "cat /etc/hostname; echo pwned > /etc/hostname")),
    Case("etc_hostname_chroot", lambda e: [("etc/hostname", SYM, _v(e, "canary.txt"))], "run",
         ("sh", "-c", "echo pwned > /etc/hostname"), flags=("--isolation", "chroot")),
    Case("etc_hosts_into_dev", lambda e: [("etc/hosts", SYM, "/dev/null")], "run", ("true",),
         error=("leads to /dev/null",)),
    Case("etc_resolv_into_proc", lambda e: [("etc/resolv.conf", SYM, "../proc/self/environ")],
         "build", ("RUN true",), error=("leads to /proc/self/environ",)),
    Case("etc_hostname_directory", lambda e: [("etc/hostname", DIR, None)], "run", ("true",),
         error=("is a directory",)),
    # the working directory
    Case("workdir_abs", lambda e: [("wdir", SYM, _v(e))], "build",
         ("RUN touch pwned-here && test -f /wdir/pwned-here",),
         config={**CONFIG, "WorkingDir": "/wdir"}),
    Case("workdir_rel_run", lambda e: [("wdir", SYM, e.up_to_victim("sub"))], "run",
         ("touch", "pwned-run"), flags=("--workingdir", "/wdir")),
    Case("workdir_dangling_chroot", lambda e: [("wdir", SYM, _v(e, "pwned-dir"))], "run",
         ("touch", "pwned-run"), flags=("--workingdir", "/wdir", "--isolation", "chroot")),
    # mount targets resolve in-root
    Case("mount_tmpfs_target", lambda e: [("app", SYM, _v(e))], "build",
         ("RUN --mount=type=tmpfs,target=/app/m touch /app/m/pwned",)),
    Case("mount_bind_target", lambda e: [("app", SYM, e.up_to_victim())], "build",
         ("RUN --mount=type=bind,source=a.txt,target=/app/pwned-bind cat /app/pwned-bind",)),
    Case("mount_cache_target", lambda e: [("app", SYM, _v(e))], "build",
         ("RUN --mount=type=cache,target=/app/x touch /app/x/pwned",)),
    Case("mount_secret_default_target", lambda e: [("run", SYM, _v(e))], "build",
         ("RUN --mount=type=secret,id=s cat /run/secrets/s",)),
    Case("mount_secret_onto_canary", lambda e: [("app", SYM, _v(e, "canary.txt"))], "build",
         ("RUN --mount=type=secret,id=s,target=/app cat /app",)),
    Case("mount_from_image_source_link", lambda e: [("leak", SYM, _v(e, "canary.txt"))], "build",
         ("RUN --mount=type=bind,from={ref},source=/leak,target=/m cat /m",),
         error=("mount source '/leak' not found",)),
    Case("run_volume_target", lambda e: [("app", SYM, _v(e))], "run",
         ("sh", "-c", "touch /app/v/pwned-vol; ls /app/v")),
    Case("tmp_link_tmpfs_chroot", lambda e: [("tmp2", SYM, _v(e))], "build",
         ("RUN --mount=type=tmpfs,target=/tmp2 touch /tmp2/pwned",),
         flags=("--isolation", "chroot")),
]  # fmt: skip


def _run_in_container(env: RootfsEnv, ref: str, case: Case):
    cid = env.ok("from", "--pull", "never", ref).strip()
    try:
        flags = list(case.flags)
        if case.name == "run_volume_target":
            vol = env.tmp / "vol"
            vol.mkdir(exist_ok=True)
            flags += ["-v", f"{vol}:/app/v"]
        return env.kiln("run", *flags, cid, "--", *case.what, timeout=60)
    finally:
        env.ok("rm", cid)


def _build(env: RootfsEnv, ref: str, case: Case):
    secret = env.tmp / "secret.txt"
    secret.write_bytes(b"s3cret\n")
    flags = [*case.flags, "--no-cache", "--secret", f"id=s,src={secret}"]
    text = "\n".join([f"FROM {ref}", *(w.replace("{ref}", ref) for w in case.what)]) + "\n"
    return env.build(text, *flags, files={"a.txt": b"a\n"}, timeout=90)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_image_symlink_never_steers_a_host_write(victim_env: RootfsEnv, case: Case):  # noqa: F811
    env = victim_env
    extra = {"config": case.config} if case.config else None
    ref = env.load(case.name.replace("_", "-"), *case.members(env), config_extra=extra)
    run = _run_in_container if case.how == "run" else _build
    res = run(env, ref, case)
    if case.error:
        check_clear_error(res, *case.error)
    else:
        assert res.returncode == 0, res.stderr.decode()
    env.assert_untouched()


def test_run_mountpoint_cleanup_never_follows_a_planted_link(victim_env: RootfsEnv):  # noqa: F811
    """``kiln run --mount`` copies the mountpoint's parents up; tidying them afterwards must not
    follow a symlink the run itself planted (it used to rmdir the victim's empty ``x``)."""
    env = victim_env
    dirs = [(name, DIR, None, {"mode": 0o755}) for name in ("data", "data/x")]
    ref = env.load("prune-link", ("app", SYM, "data"), *dirs)
    cid = env.ok("from", "--pull", "never", ref).strip()
    try:
        script = f"rm /app && ln -s {env.victim} /app"
        res = env.kiln("run", "--mount", "type=tmpfs,destination=/app/x/m", cid,
                       "--", "sh", "-c", script, timeout=60)  # fmt: skip
        assert res.returncode == 0, res.stderr.decode()
    finally:
        env.ok("rm", cid)
    assert (env.victim / "x").is_dir()
    env.assert_untouched()


def test_kiln_mount_then_run_stays_inside(victim_env: RootfsEnv):  # noqa: F811
    """With the rootfs held by ``kiln mount``, a RUN on a hostile /dev is refused the same way,
    and the mount point is the store's own."""
    env = victim_env
    ref = env.load("mount-dev", ("dev", SYM, str(env.victim)))
    cid = env.ok("from", "--pull", "never", ref).strip()
    try:
        path = env.ok("mount", cid).strip()
        assert path.startswith(str(env.root)), path
        check_clear_error(env.kiln("run", cid, "--", "true", timeout=60), *REFUSED_LINK)
        env.ok("umount", cid)
    finally:
        env.ok("rm", cid)
    env.assert_untouched()
