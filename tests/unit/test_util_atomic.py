"""kiln.util.atomic: a file appears whole or not at all, and only regular files are replaced."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from kiln.errors import InvalidArgument, NotFound
from kiln.util.atomic import (
    AtomicFile,
    atomic_write,
    file_kind,
    fsync_all,
    fsync_dir,
    refuse_symlinks,
    run_together,
)

OLD = b"old contents\n"


def names(d) -> list[str]:
    return sorted(os.listdir(d))


def test_new_file_has_exact_mode_and_no_temp_left(tmp_path):
    old_umask = os.umask(0o077)
    try:
        atomic_write(str(tmp_path / "f"), b"data")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "f").read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o644
    assert names(tmp_path) == ["f"]


def test_replacing_keeps_readers_of_the_old_file(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(OLD)
    with open(target, "rb") as old:
        atomic_write(str(target), b"new")
        assert old.read() == OLD
    assert target.read_bytes() == b"new"
    assert names(tmp_path) == ["f"]


@pytest.mark.parametrize("durable", [True, False])
def test_a_cache_file_is_replaced_whole_without_a_sync(tmp_path, monkeypatch, durable):
    """``durable=False`` (a cached answer worked out again when lost) still replaces the
    file whole, and syncs neither it nor its directory; the default syncs both."""
    target = tmp_path / "f"
    target.write_bytes(OLD)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    atomic_write(str(target), b"new", durable=durable)
    assert target.read_bytes() == b"new" and names(tmp_path) == ["f"]
    assert len(synced) == (2 if durable else 0)


def test_keep_mode_keeps_the_replaced_files_mode(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(OLD)
    os.chmod(target, 0o600)
    with AtomicFile(str(target), keep_mode=True) as f:
        f.file.write(b"new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_a_failure_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(OLD)
    with pytest.raises(RuntimeError), AtomicFile(str(target)) as f:
        f.file.write(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == OLD
    assert names(tmp_path) == ["f"]


def test_abort_of_a_new_file_leaves_nothing(tmp_path):
    f = AtomicFile(str(tmp_path / "f"))
    f.file.write(b"x")
    f.abort()
    f.abort()  # idempotent
    assert names(tmp_path) == []


@pytest.mark.parametrize("kind", ["dir", "fifo", "symlink", "dangling"])
def test_only_regular_files_are_replaced(tmp_path, kind):
    target = tmp_path / "t"
    (tmp_path / "real").write_bytes(OLD)
    if kind == "dir":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        os.symlink("real", target)
    else:
        os.symlink("missing", target)
    before = os.lstat(target)
    with pytest.raises(InvalidArgument, match="only replaces regular files"):
        atomic_write(str(target), b"new")
    after = os.lstat(target)
    assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (
        before.st_ino,
        stat.S_IFMT(before.st_mode),
    )
    assert (tmp_path / "real").read_bytes() == OLD
    assert names(tmp_path) == ["real", "t"]


def test_a_target_swapped_for_a_fifo_while_written_is_not_replaced(tmp_path):
    target = tmp_path / "t"
    f = AtomicFile(str(target))
    f.file.write(b"new")
    os.mkfifo(target)  # someone made a FIFO there meanwhile
    with pytest.raises(InvalidArgument, match="FIFO"):
        f.commit()
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert names(tmp_path) == ["t"]


def test_missing_directory_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no such directory"):
        atomic_write(str(tmp_path / "no" / "f"), b"x")


def test_a_file_as_directory_is_refused(tmp_path):
    (tmp_path / "file").write_bytes(OLD)
    with pytest.raises(InvalidArgument, match="not a directory"):
        atomic_write(str(tmp_path / "file" / "f"), b"x")


def test_trailing_slash_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="file name"):
        atomic_write(str(tmp_path / "f") + "/", b"x")


def test_private_refuses_a_symlinked_file(tmp_path):
    (tmp_path / "victim").write_bytes(OLD)
    os.symlink("victim", tmp_path / "auth.json")
    with pytest.raises(InvalidArgument, match="auth file .* is a symbolic link"):
        atomic_write(str(tmp_path / "auth.json"), b"{}", private=True, what="auth file")
    with pytest.raises(InvalidArgument, match="symbolic link"):
        refuse_symlinks(str(tmp_path / "auth.json"), "auth file")
    assert (tmp_path / "victim").read_bytes() == OLD
    assert os.readlink(tmp_path / "auth.json") == "victim"
    assert names(tmp_path) == ["auth.json", "victim"]


def test_private_refuses_a_symlinked_directory(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink("elsewhere", tmp_path / "containers")
    path = str(tmp_path / "containers" / "auth.json")
    with pytest.raises(InvalidArgument, match="auth file directory .* is a symbolic link"):
        atomic_write(path, b"{}", mode=0o600, private=True, what="auth file")
    with pytest.raises(InvalidArgument, match="directory .* is a symbolic link"):
        refuse_symlinks(path, "auth file")
    assert names(tmp_path / "elsewhere") == []


def test_private_writes_a_real_file(tmp_path):
    path = tmp_path / "auth.json"
    path.write_bytes(OLD)
    refuse_symlinks(str(path), "auth file")
    atomic_write(str(path), b"{}", mode=0o600, private=True, what="auth file")
    assert path.read_bytes() == b"{}"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert names(tmp_path) == ["auth.json"]


def test_file_kind_and_fsync_dir(tmp_path):
    assert file_kind(os.stat(tmp_path).st_mode) == "directory"
    assert file_kind(stat.S_IFCHR) == "character device"
    assert file_kind(stat.S_IFIFO) == "FIFO"
    fsync_dir(str(tmp_path))


def test_fsync_trees_syncs_every_file_and_directory_or_the_file_system(tmp_path, monkeypatch):
    from kiln.util import atomic

    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_bytes(b"x")
    (tmp_path / "g").write_bytes(b"y")
    os.symlink("g", tmp_path / "link")  # made durable by its directory's fsync
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    assert atomic.fsync_trees([str(tmp_path)]) == 5  # root, d, d/e, d/e/f, g
    assert len(synced) == 5
    whole: list[str] = []
    monkeypatch.setattr(atomic, "syncfs", whole.append)
    assert atomic.fsync_trees([str(tmp_path)], limit=3) == -1
    assert whole == [str(tmp_path)]


def test_fsync_trees_falls_back_to_syncfs_when_an_entry_cannot_be_opened(tmp_path, monkeypatch):
    from kiln.util import atomic

    (tmp_path / "f").write_bytes(b"x")
    real_open = os.open

    def refusing_open(path, flags, *a):
        if str(path).endswith("/f"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a)

    monkeypatch.setattr(atomic.os, "open", refusing_open)
    whole: list[str] = []
    monkeypatch.setattr(atomic, "syncfs", whole.append)
    assert atomic.fsync_trees([str(tmp_path)]) == -1 and whole == [str(tmp_path)]


def test_run_together_overlaps_the_jobs_and_raises_the_first_error():
    both = threading.Barrier(3, timeout=20)  # passes only if all three wait at once
    run_together([both.wait, both.wait, both.wait])
    done: list[int] = []

    def fails() -> None:
        raise OSError(5, "disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_together([lambda: done.append(1), fails, lambda: done.append(2)])
    assert sorted(done) == [1, 2]  # the others still ran to the end
    run_together([])


def test_fsync_all_syncs_together_without_a_thread_object_and_reports_a_failure(
    tmp_path, monkeypatch
):
    """A build step's blob publish calls this twice: its syncs wait together, but no
    ``Thread.start`` (which waits for the new thread to get a CPU and the GIL: milliseconds
    per step on a busy machine) and no thread object left for the CLI's exit to see."""
    started: list[object] = []
    real_start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda t: (started.append(t), real_start(t)))
    fds = [os.open(tmp_path / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o600) for i in range(3)]
    try:
        before = threading.active_count()
        fsync_all(fds, dirs=[str(tmp_path)])
        assert started == [] and threading.active_count() == before
        bad = os.open(tmp_path / "gone", os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(bad)  # a closed descriptor: its fsync fails with EBADF
        with pytest.raises(OSError) as err:
            fsync_all([fds[0], bad, fds[1]])
        assert err.value.errno == 9
        assert started == [] and threading.active_count() == before
    finally:
        for fd in fds:
            os.close(fd)


def _has_unnamed_temp_files(d) -> bool:
    try:
        os.close(os.open(d, os.O_RDWR | os.O_TMPFILE, 0o600))
    except OSError:
        return False
    return True


_WRITER = """
import sys
from kiln.util.output import open_output
out = open_output(sys.argv[1])
out.file.write(b"new" * 100000)
out.file.flush()
print("written", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("existing", [False, True])
def test_a_writer_killed_mid_write_leaves_nothing_beside_the_output(tmp_path, existing):
    """``kiln save -o out.tar`` SIGKILLed mid-write: the directory the user named holds what
    it held before (nothing, or the old file), no temp file that nothing will ever sweep."""
    if not _has_unnamed_temp_files(tmp_path):
        pytest.skip("the file system of the temporary directory has no O_TMPFILE")
    import subprocess
    import sys

    import kiln
    from killed_process import kill_and_reap, wait_for_line

    out = tmp_path / "out"
    out.mkdir()
    if existing:
        (out / "out.tar").write_bytes(OLD)
    src = os.path.dirname(os.path.dirname(kiln.__file__))
    env = dict(os.environ, PYTHONPATH=src)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out / "out.tar")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for_line(proc, "written")
        # the bytes are written and still invisible: nothing new in the directory
        assert names(out) == (["out.tar"] if existing else [])
    finally:
        assert kill_and_reap(proc) == -9
        proc.stdin.close()
    assert names(out) == (["out.tar"] if existing else [])
    if existing:
        assert (out / "out.tar").read_bytes() == OLD


@pytest.mark.parametrize("existing", [False, True])
def test_where_unnamed_temp_files_are_not_supported_a_named_one_is_used(
    tmp_path, monkeypatch, existing
):
    import kiln.util.atomic as atomic

    monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    target = tmp_path / "f"
    if existing:
        target.write_bytes(OLD)
    with AtomicFile(str(target)) as f:
        f.file.write(b"new")
        temps = [n for n in names(tmp_path) if n.startswith(".kiln-f-") and n.endswith(".tmp")]
        assert len(temps) == 1
    assert target.read_bytes() == b"new"
    assert names(tmp_path) == ["f"]
