"""The one in-root resolver against hostile trees, through each of its users.

A root holds the links an image or a build context may carry (an absolute link to a host
directory, a relative one climbing above the root, loops) beside a victim directory
outside it. The resolver itself, the archive's writes (``SafeRoot``) and the runtime
(mountpoints, user lookup, the exec check, chroot's mount targets) must all stay inside,
with openat2 and with the hand walk.
"""

from __future__ import annotations

import errno
import io
import os
import stat

import pytest

from kiln.archive import safe_root
from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument, KilnError, ProcessFailed
from kiln.runtime import chroot, mountpoints
from kiln.runtime.exec_check import check_command
from kiln.runtime.options import Mount, RunOptions
from kiln.runtime.users import resolve_user
from kiln.util import inroot
from kiln.util.inroot import InRoot


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def mode(request, monkeypatch):
    """Every user of the resolver goes one way: the kernel's openat2 or the hand walk."""
    if request.param and not inroot.openat2_available():
        pytest.skip("no openat2 on this kernel")
    monkeypatch.setattr(inroot, "_openat2_ok", request.param)
    return request.param


@pytest.fixture
def tree(tmp_path, mode):
    """(root, outside): hostile links in root, a victim directory outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (outside / "passwd").write_text("victim:x:4242:4242::/home/victim:/bin/sh\n")
    (outside / "tool").write_text("#!/bin/sh\n")
    (outside / "tool").chmod(0o755)
    root = tmp_path / "root"
    (root / str(outside).lstrip("/")).mkdir(parents=True)  # empty: no secret in it
    os.symlink(str(outside), root / "abs")  # a host path: means <root>/<that path>
    os.symlink("../../../../..", root / "up")  # climbs above the root: clamped at it
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    return root, outside


def _victim_untouched(outside) -> None:
    assert sorted(os.listdir(outside)) == ["passwd", "secret", "tool"]
    assert (outside / "secret").read_text() == "secret"


# -- the resolver ------------------------------------------------------------------------


def test_resolver_clamps_absolute_links_and_dotdot(tree):
    root, outside = tree
    with InRoot(str(root)) as r:
        assert r.resolve("abs") == str(outside)
        assert r.resolve("up") == "/"
        assert r.resolve("up/up/../abs/x") == str(outside) + "/x"
        assert r.resolve("/../../up") == "/"
        with pytest.raises(FileNotFoundError):
            os.close(r.open("abs/secret"))  # never the host's file
        with pytest.raises(FileNotFoundError):
            os.close(r.open("../../outside/secret"))
        assert r.stat("up/..", follow=True).st_ino == os.stat(root).st_ino
        assert r.read_regular("abs/secret", 100) is None
    _victim_untouched(outside)


def test_a_small_file_is_read_without_a_buffer_of_the_limit(tmp_path, monkeypatch):
    import tracemalloc

    (tmp_path / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n")
    grown = tmp_path / "grown"
    grown.write_bytes(b"12345678")
    with InRoot(str(tmp_path)) as r:
        tracemalloc.start()
        try:
            data = r.read_regular("passwd", 16 << 20)  # a RUN step reads /etc/passwd so
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert data == b"root:x:0:0:root:/root:/bin/sh\n"
        assert peak < 1 << 20  # not the 16 MiB the limit allows
        # a file that grows between its stat and its read is read on, up to the limit
        real_stat = r.stat
        monkeypatch.setattr(r, "stat", lambda rel, follow=False: os.stat_result(
            (*real_stat(rel, follow=follow)[:6], 2, *real_stat(rel, follow=follow)[7:])
        ))  # fmt: skip
        assert r.read_regular("grown", 100) == b"12345678"
        with pytest.raises(inroot.FileRefused, match="larger than 5 bytes"):
            r.read_regular("grown", 5)


def test_resolver_refuses_loops_and_nul_bytes(tree):
    root, outside = tree
    with InRoot(str(root)) as r:
        for path in ("loop1", "loop2/x", "up/loop1"):
            with pytest.raises(OSError) as exc:
                os.close(r.open(path, os.O_PATH))
            assert exc.value.errno == errno.ELOOP
            with pytest.raises(OSError) as followed:
                r.follow(path)
            assert followed.value.errno == errno.ELOOP
        with pytest.raises(InvalidArgument, match="NUL"):
            r.lstat("a\x00b")


def test_beneath_refuses_links_that_leave_instead_of_clamping(tree):
    root, outside = tree
    (root / "sub").mkdir()
    os.symlink("../..", root / "sub" / "out")
    with InRoot(str(root)) as r:
        os.close(r.open("abs", os.O_PATH))  # clamped: fine
        for path in ("abs", "up", "sub/out"):
            with pytest.raises(OSError) as exc:
                os.close(r.open(path, os.O_PATH, beneath=True))
            assert exc.value.errno == errno.EXDEV
        os.close(r.open("sub/../sub", os.O_PATH, beneath=True))  # staying inside: fine


def test_walk_never_follows_a_component_swapped_for_a_link(tree):
    """The hand walk opens each component O_NOFOLLOW and reads the link it opened."""
    root, outside = tree
    (root / "d").mkdir()
    with InRoot(str(root), use_openat2=False) as r:
        walk = inroot._Walk()
        try:
            r._walk_into(walk, ["d"], False, False, 0o755)
            os.rmdir(root / "d")
            os.symlink(str(outside), root / "d")
            with pytest.raises(FileNotFoundError):  # the old dir fd is gone, never outside
                os.open("secret", os.O_RDONLY, dir_fd=walk.stack[-1])
        finally:
            walk.close()
        assert r.resolve("d/secret") == str(outside) + "/secret"


# -- the archive's writes ------------------------------------------------------------------


def test_archive_writes_land_inside(tree):
    root, outside = tree
    with SafeRoot(str(root)) as sr:
        sr.makedirs("abs/sub")
        sr.write_file("abs/sub/f", io.BytesIO(b"in"), 0o644)
        sr.write_file("up/up/top", io.BytesIO(b"top"), 0o644)
        sr.write_file("../../x", io.BytesIO(b"x"), 0o644)
        assert sr.makedirs_following("up/made").path == "/made"
        with pytest.raises(OSError) as loop:
            sr.makedirs("loop1/x")
        assert loop.value.errno == errno.ELOOP
        with pytest.raises(InvalidArgument, match="NUL"):
            sr.write_file("a\x00b", io.BytesIO(b""), 0o644)
    assert (root / str(outside).lstrip("/") / "sub" / "f").read_bytes() == b"in"
    assert (root / "top").read_bytes() == b"top" and (root / "x").exists()
    assert (root / "made").is_dir()
    _victim_untouched(outside)


# -- the runtime ---------------------------------------------------------------------------


def test_runtime_mountpoints_are_made_inside_and_taken_away(tree):
    root, outside = tree
    opts = RunOptions(args=["true"], cwd="/up/work",
                      mounts=[Mount("tmpfs", "tmpfs", "/abs/mnt", ())])  # fmt: skip
    made = mountpoints.prepare(opts, str(root))
    inside = root / str(outside).lstrip("/")
    assert (inside / "mnt").is_dir() and (root / "work").is_dir()
    assert (root / "etc" / "hosts").is_file()
    _victim_untouched(outside)
    made.cleanup()
    assert not (inside / "mnt").exists() and not (root / "etc" / "hosts").exists()
    assert (root / "work").is_dir()  # the working directory stays, as buildah leaves it


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (RunOptions(args=["true"], cwd="/loop1/w"), "symlink loop"),
        (RunOptions(args=["true"], mounts=[Mount("tmpfs", "tmpfs", "/loop2", ())]), "loop"),
        (RunOptions(args=["true"], cwd="/a\x00b"), "NUL"),
        (RunOptions(args=["true"], mounts=[Mount("tmpfs", "tmpfs", "/m\x00", ())]), "NUL"),
    ],
    ids=["cwd-loop", "mount-loop", "cwd-nul", "mount-nul"],
)
def test_runtime_mountpoints_refuse_with_one_clear_error(tree, opts, message):
    """A loop or a NUL byte is the user's error, said as such (a NUL byte used to escape as
    a bare ValueError), and nothing kiln made is left behind."""
    root, outside = tree
    before = sorted(os.listdir(root))
    with pytest.raises(KilnError, match=message):
        mountpoints.prepare(opts, str(root))
    assert sorted(os.listdir(root)) == before
    _victim_untouched(outside)


def test_runtime_user_lookup_reads_the_container_files(tree):
    root, outside = tree
    (root / "etc").mkdir()
    os.symlink(str(outside / "passwd"), root / "etc" / "passwd")  # the host's file: not read
    with pytest.raises(InvalidArgument, match="victim"):
        resolve_user(str(root), "victim")
    os.remove(root / "etc" / "passwd")
    os.symlink("/loop1", root / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="cannot read /etc/passwd"):
        resolve_user(str(root), "victim")


def test_runtime_exec_check_looks_inside(tree):
    root, outside = tree
    with pytest.raises(ProcessFailed) as exc:
        check_command(RunOptions(args=["/abs/tool"]), str(root))
    assert exc.value.exit_code == 127
    with pytest.raises(ProcessFailed):
        check_command(RunOptions(args=["tool"], env=[f"PATH=/up{outside}"]), str(root))
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    check_command(RunOptions(args=["/up/up/bin/tool"]), str(root))


def test_chroot_mount_targets_resolve_inside(tree):
    root, outside = tree
    target = chroot._Root(str(root))
    fd = target.open("abs", os.O_PATH | os.O_DIRECTORY)
    try:
        assert os.fstat(fd).st_ino == os.stat(root / str(outside).lstrip("/")).st_ino
    finally:
        os.close(fd)
    with pytest.raises(OSError) as exc:
        target.open("up/loop1", os.O_PATH)
    assert exc.value.errno == errno.ELOOP
    assert stat.S_ISDIR(os.stat(root).st_mode)


@pytest.mark.parametrize("flags", [os.O_PATH, os.O_RDONLY], ids=["path", "reopened"])
def test_the_walk_hands_its_descriptor_over_before_a_ctrl_c_can_land(tmp_path, monkeypatch, flags):
    """Without openat2, ``open_into``'s descriptor is the caller's list's from its open
    (the walk's last one, or the /proc reopen), not only once the walk has returned."""
    import ctrl_c_anywhere
    from ctrl_c_anywhere import every_point, open_fds

    monkeypatch.setattr(inroot, "_openat2_ok", False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    os.symlink("d/f", tmp_path / "link")
    opened: list[int] = []

    def call() -> None:
        fds: list[int] = []
        try:
            opened.append(os.fstat(r.open_into(fds, "link", flags)).st_size)
        finally:
            for fd in fds:
                os.close(fd)

    with InRoot(str(tmp_path)) as r:
        before = open_fds()
        trials, leaks = 0, []
        for n, _interrupted in every_point(call, within=(inroot.__file__,)):
            trials += 1
            if open_fds().keys() != before.keys():
                leaks.append(f"point {n} at {ctrl_c_anywhere.sent_at}")
                before = open_fds()
    assert trials > 3
    assert not leaks, f"descriptors left open: {leaks}"
    assert opened and opened[-1] == 1


def test_a_ctrl_c_in_the_runtime_lookups_leaves_no_root_open(tree):
    """The runtime's users open their root with ``InRoot.opened``: a Ctrl-C as the root is
    made, before the ``with`` holds it, closes it too."""
    import ctrl_c_anywhere
    from ctrl_c_anywhere import every_point, open_fds

    root, _outside = tree
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("app:x:1000:1000::/home/app:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)

    def call() -> None:
        resolve_user(str(root), "app")
        check_command(RunOptions(args=["/bin/tool"]), str(root))

    call()
    before = open_fds()
    trials, leaks = 0, []
    for n, _interrupted in every_point(call):
        trials += 1
        if open_fds().keys() != before.keys():
            leaks.append(f"point {n} at {ctrl_c_anywhere.sent_at}")
            before = open_fds()
    assert trials > 3
    assert not leaks, f"descriptors left open: {leaks}"


def test_a_ctrl_c_in_the_archive_writes_leaves_no_descriptor_open(tree):
    """SafeRoot's writes that open a path, or a parent, own its fd from the open."""
    import ctrl_c_anywhere
    from ctrl_c_anywhere import every_point, open_fds

    root, _outside = tree
    (root / "f").write_text("x")
    uid, gid = os.getuid(), os.getgid()

    def call() -> None:
        with SafeRoot.opened(str(root)) as r:
            r.chown("f", uid, gid, follow=True)
            r.utime("f", 0, 0, follow=True)
            r.makedirs("a/b")
            r.listdir("a")
            r.lstat("a/b")
            r.mkdir("a/c")
        for d in ("a/b", "a/c", "a"):
            os.rmdir(root / d)

    call()
    before = open_fds()
    trials, leaks = 0, []
    for n, _interrupted in every_point(call, within=(inroot.__file__, safe_root.__file__)):
        trials += 1
        if open_fds().keys() != before.keys():
            leaks.append(f"point {n} at {ctrl_c_anywhere.sent_at}")
            before = open_fds()
        for d in (root / "a" / "b", root / "a" / "c", root / "a"):
            if d.exists():
                d.rmdir()
    assert trials > 3
    assert not leaks, f"descriptors left open: {leaks}"
