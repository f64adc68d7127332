"""kiln.util.output: what a user-named output path is decides how it is written.

Devices here are pseudo-terminals (``os.openpty``: a character device, no root needed);
the root tests with a ``mknod`` device, a socket and every command are in
``tests/security/test_output_targets.py``.
"""

from __future__ import annotations

import io
import os
import stat
import threading

import pytest

from kiln.errors import InvalidArgument, NoSpace, NotFound
from kiln.util.output import check_output, open_output, output_stream, write_output

OLD = b"old contents\n"


def names(d) -> list[str]:
    return sorted(os.listdir(d))


def test_new_path_is_created(tmp_path):
    write_output(str(tmp_path / "out"), b"data")
    assert (tmp_path / "out").read_bytes() == b"data"
    assert names(tmp_path) == ["out"]


def test_regular_file_is_replaced_atomically_keeping_its_mode(tmp_path):
    target = tmp_path / "out"
    target.write_bytes(OLD)
    os.chmod(target, 0o640)
    with open(target, "rb") as old:
        out = open_output(str(target))
        assert out.atomic
        out.file.write(b"new")
        assert target.read_bytes() == OLD  # not visible before commit
        out.commit()
        assert old.read() == OLD
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert names(tmp_path) == ["out"]


def test_abort_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out"
    target.write_bytes(OLD)
    with pytest.raises(ValueError), open_output(str(target)) as out:
        out.file.write(b"partial")
        raise ValueError
    assert target.read_bytes() == OLD
    assert names(tmp_path) == ["out"]


def test_symlink_is_followed_and_kept(tmp_path):
    (tmp_path / "real").write_bytes(OLD)
    os.symlink("real", tmp_path / "link")
    write_output(str(tmp_path / "link"), b"new")
    assert os.readlink(tmp_path / "link") == "real"
    assert (tmp_path / "real").read_bytes() == b"new"
    assert names(tmp_path) == ["link", "real"]


def test_dangling_symlink_creates_its_target(tmp_path):
    os.symlink("sub/made", tmp_path / "link")
    (tmp_path / "sub").mkdir()
    write_output(str(tmp_path / "link"), b"new")
    assert (tmp_path / "sub" / "made").read_bytes() == b"new"
    assert os.readlink(tmp_path / "link") == "sub/made"


def test_dangling_symlink_into_a_missing_directory_is_not_found(tmp_path):
    os.symlink("nodir/made", tmp_path / "link")
    with pytest.raises(NotFound, match="no such directory"):
        write_output(str(tmp_path / "link"), b"new")
    assert names(tmp_path) == ["link"]


def test_symlink_loop_is_refused(tmp_path):
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        check_output(str(tmp_path / "a"))


def test_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(InvalidArgument, match="is a directory"):
        open_output(str(tmp_path / "d"))
    os.symlink("d", tmp_path / "link")
    with pytest.raises(InvalidArgument, match="is a directory"):
        check_output(str(tmp_path / "link"))
    assert names(tmp_path) == ["d", "link"] and names(tmp_path / "d") == []


def test_missing_parent_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no such directory"):
        check_output(str(tmp_path / "no" / "out"))
    (tmp_path / "file").write_bytes(OLD)
    with pytest.raises(NotFound, match="not a directory"):
        check_output(str(tmp_path / "file" / "out"))


def test_trailing_slash_and_empty_are_refused(tmp_path):
    with pytest.raises(InvalidArgument, match="file name"):
        check_output(str(tmp_path / "new") + "/")
    with pytest.raises(InvalidArgument, match="empty"):
        check_output("")


def test_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    with open_output(str(fifo)) as out:
        assert not out.atomic
        out.file.write(b"through the pipe")
    t.join(timeout=10)
    assert not t.is_alive() and got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert names(tmp_path) == ["p"]


def test_terminal_is_written_through(tmp_path):
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        os.symlink(tty, tmp_path / "tty")  # through a link too
        before = os.lstat(tty)
        write_output(str(tmp_path / "tty"), b"hello")
        assert os.read(master, 100).replace(b"\r", b"") == b"hello"
        after = os.lstat(tty)
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    finally:
        os.close(master)
        os.close(slave)


def test_dash_is_stdout_only_when_given(tmp_path, monkeypatch):
    stream = io.BytesIO()
    with open_output("-", stdout=stream) as out:
        out.file.write(b"to stdout")
    assert stream.getvalue() == b"to stdout" and not stream.closed
    monkeypatch.chdir(tmp_path)
    write_output("-", b"a file named dash")  # podman save -o - writes a file named -
    assert (tmp_path / "-").read_bytes() == b"a file named dash"


def test_check_output_writes_nothing(tmp_path):
    check_output(str(tmp_path / "new"))
    assert names(tmp_path) == []


def test_output_dir_makes_a_directory_and_refuses_anything_else(tmp_path):
    from kiln.util.output import output_dir

    output_dir(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
    output_dir(str(tmp_path / "a" / "b"))  # existing: fine
    os.symlink("a", tmp_path / "link")
    output_dir(str(tmp_path / "link"))  # a link to a directory: followed
    os.mkfifo(tmp_path / "p")
    with pytest.raises(InvalidArgument, match="p is a FIFO; an OCI layout needs a directory"):
        output_dir(str(tmp_path / "p"), "an OCI layout")
    os.symlink("nowhere", tmp_path / "dangling")
    with pytest.raises(InvalidArgument, match="dangling symbolic link"):
        output_dir(str(tmp_path / "dangling"))
    (tmp_path / "f").write_bytes(OLD)
    with pytest.raises(InvalidArgument, match="not a directory"):
        output_dir(str(tmp_path / "f" / "sub"))
    assert stat.S_ISFIFO(os.lstat(tmp_path / "p").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["a", "dangling", "f", "link", "p"]


@pytest.mark.parametrize(
    "form", ["/dev/fd/{fd}", "/proc/self/fd/{fd}", "/proc/thread-self/fd/{fd}"]
)
def test_own_descriptors_are_written_through(tmp_path, form):
    """``-o /dev/stdout`` (here: a pipe's descriptor by name) writes into that descriptor;
    it is never resolved to ``pipe:[...]`` or to the redirected file and replaced."""
    r, w = os.pipe()
    try:
        path = form.format(fd=w)
        check_output(path)
        write_output(path, b"into the pipe")
        assert os.read(r, 100) == b"into the pipe"
    finally:
        os.close(r)
        os.close(w)
    with open(tmp_path / "log", "wb") as f:  # like `>> log`: written at the descriptor's offset
        f.write(b"before|")
        f.flush()
        write_output(f"/dev/fd/{f.fileno()}", b"after")
    assert (tmp_path / "log").read_bytes() == b"before|after"
    assert sorted(os.listdir(tmp_path)) == ["log"]


def test_a_closed_descriptor_is_a_clear_error():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(InvalidArgument, match="Bad file descriptor"):
        check_output(f"/dev/fd/{w}")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_an_error_naming_it_not_the_store():
    with pytest.raises(NoSpace, match=r"^writing /dev/full: no space left on device$"):
        write_output("/dev/full", b"x" * 10)  # buffered: it fails when flushed
    full_device = pytest.raises(NoSpace, match=r"^writing /dev/full: no space left on device$")
    with full_device, open_output("/dev/full") as out:
        out.file.write(b"x" * (1 << 20))
    full_stdout = pytest.raises(NoSpace, match=r"^writing standard output: no space left on")
    with open("/dev/full", "wb", buffering=0) as full, full_stdout:
        output_stream(full).write(b"x")


def test_a_closed_pipe_stays_a_broken_pipe():
    r, w = os.pipe()
    os.close(r)
    with open(w, "wb", buffering=0) as f, pytest.raises(BrokenPipeError):
        output_stream(f, "the pipe").write(b"x")
