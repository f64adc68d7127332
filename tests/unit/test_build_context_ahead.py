"""A big context's no-op rebuild shares its walk with a forked helper
(:mod:`kiln.build.context_ahead`): the helper checks the second half of the indexed
directories and the walk takes the stored lines of those it found unchanged. The digest
must stay the one a plain walk gives, whatever changed in a directory the helper checked,
and the helper must never outlive the digest."""

from __future__ import annotations

import hashlib
import os
import select
import signal

import pytest

from kiln.build import context as context_module
from kiln.build import context_ahead
from kiln.build.context import BuildContext
from kiln.store import Store

LAST = "d"  # the last directory in walk order: always the helper's


@pytest.fixture
def store(tmp_path_factory):
    return Store.open(str(tmp_path_factory.mktemp("kiln-store")))


def _recorded(monkeypatch) -> dict:
    """Record each directory a helper was given and what it answered, and each helper
    started (its pid; None when the walk went alone)."""
    record: dict = {"answers": {}, "pids": []}
    unchanged = context_ahead.Ahead.unchanged

    def counted(self, rel, rec):
        answer = unchanged(self, rel, rec)
        if rel in self.given:
            record["answers"][rel] = answer
        return answer

    start = context_ahead.check_ahead

    def started(*args):
        ahead = start(*args)
        record["pids"].append(None if ahead is None else ahead.pid)
        return ahead

    monkeypatch.setattr(context_ahead.Ahead, "unchanged", counted)
    monkeypatch.setattr(context_ahead, "check_ahead", started)  # the context imports it per walk
    return record


@pytest.fixture
def asked(monkeypatch):
    """Every walk shared with a helper (any size, any core count), and what it answered."""
    monkeypatch.setattr(context_module, "RACY_NS", 0)  # trust files written just now
    monkeypatch.setattr(context_ahead, "MIN_ENTRIES", 1)
    monkeypatch.setattr(context_ahead, "_cores", lambda: 2)
    monkeypatch.setattr(context_ahead.Ahead, "wait", True)  # every answer, not a race's
    return _recorded(monkeypatch)


def _tree(root) -> None:
    for d in ("a", "b", "c"):
        for i in range(6):
            path = root / d / f"f{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{d}{i}".encode() * 10)
    (root / "b" / "sub").mkdir()
    (root / "b" / "sub" / "x").write_bytes(b"x")
    (root / LAST / "sub").mkdir(parents=True)
    (root / LAST / "sub" / "y").write_bytes(b"y")
    (root / LAST / "file").write_bytes(b"0123456789")
    (root / LAST / "script").write_bytes(b"#!/bin/sh\n")
    os.symlink("file", root / LAST / "link")


def _plain(ctx_dir, sources=(".",)) -> str:
    """The digest as the generic walk makes it, every file read (no index, no helper)."""
    with BuildContext(str(ctx_dir)) as ctx:
        h = hashlib.sha256()
        for src in sources:
            h.update(f"source {src}\n".encode())
            for top in ctx.expand(src):
                for rel, st in ctx.walk(top, follow=True):
                    h.update(ctx._entry_line(rel, st, follow=rel == top))
        return "sha256:" + h.hexdigest()


def _digest(ctx_dir, store, sources=(".",)) -> tuple[str, int]:
    """The digest with the store's index, and how many files it read."""
    with BuildContext(str(ctx_dir), checksums=store) as ctx:
        return ctx.digest(list(sources)), ctx.hashed_here()


def _rewrite_keeping_times(path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _replace_keeping_times(path, data: bytes) -> None:
    """Another file (another inode) of the same size and times in its place."""
    st = path.stat()
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)


def _empty(path) -> None:
    for child in path.iterdir():
        child.unlink()


def _dir_to_link(path) -> None:
    twin = path.with_name(path.name + "-twin")
    path.rename(twin)
    os.symlink(twin.name, path)


CHANGES = {
    "content, size and mtime kept": lambda d: _rewrite_keeping_times(d / "file", b"9876543210"),
    "inode, size and mtime kept": lambda d: _replace_keeping_times(d / "file", b"abcdefghij"),
    "size": lambda d: (d / "file").write_bytes(b"0123456789+"),
    "mode": lambda d: os.chmod(d / "script", 0o755),
    "symlink target": lambda d: (os.unlink(d / "link"), os.symlink("script", d / "link")),
    "new file": lambda d: (d / "new").write_bytes(b""),
    "removed file": lambda d: os.unlink(d / "file"),
    "emptied directory": lambda d: _empty(d / "sub"),
    "directory made a link": lambda d: _dir_to_link(d / "sub"),
}


def test_an_unchanged_context_is_checked_by_the_helper_and_read_by_nobody(tmp_path, store, asked):
    _tree(tmp_path)
    want = _plain(tmp_path)
    assert _digest(tmp_path, store) == (want, 22)  # indexed: every file read
    assert asked["pids"] == [None]  # no index yet, nothing to share
    assert _digest(tmp_path, store) == (want, 0)
    assert asked["pids"][1] is not None
    below = ["a", "b", "b/sub", "c", LAST, f"{LAST}/sub"]
    assert asked["answers"] == {"": False, **dict.fromkeys(below, True)}  # met at the top


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_change_in_a_directory_the_helper_checked_changes_the_digest(
    tmp_path, store, asked, change
):
    _tree(tmp_path)
    before, _ = _digest(tmp_path, store)
    CHANGES[change](tmp_path / LAST)
    after, _ = _digest(tmp_path, store)
    assert asked["answers"][LAST] is False  # the helper saw it changed
    assert after == _plain(tmp_path)
    assert after != before
    assert _digest(tmp_path, store) == (after, 0)  # the change indexed in turn


def test_a_new_owner_or_a_touch_rereads_the_file_and_keeps_the_digest(tmp_path, store, asked):
    _tree(tmp_path)
    before, _ = _digest(tmp_path, store)
    os.chown(tmp_path / LAST / "file", os.getuid(), os.getgid())  # moves the ctime only
    assert _digest(tmp_path, store) == (before, 1)
    os.utime(tmp_path / LAST / "script", ns=(0, 10**18))
    assert _digest(tmp_path, store) == (before, 1)


def test_a_helper_that_answers_nothing_costs_only_its_work(tmp_path, store, asked, monkeypatch):
    _tree(tmp_path)
    want, _ = _digest(tmp_path, store)
    monkeypatch.setattr(context_ahead, "_same", lambda *a: os._exit(3))
    assert _digest(tmp_path, store) == (want, 0)
    assert asked["pids"][-1] is not None and not any(asked["answers"].values())


@pytest.mark.parametrize("ends", ["done", "stopped"])
def test_the_walk_never_waits_for_its_helper_nor_leaves_it_behind(
    tmp_path, store, asked, monkeypatch, ends
):
    _tree(tmp_path)
    want, _ = _digest(tmp_path, store)
    if ends == "stopped":
        (tmp_path / "a" / "f0.txt").write_bytes(b"changed")  # the walk stops there

    def stuck(*a):  # answers nothing for a minute (bounded: even a failing test leaks nothing)
        select.select([os.pipe()[0]], [], [], 60)

    monkeypatch.setattr(context_ahead, "_same", stuck)
    monkeypatch.setattr(context_ahead.Ahead, "wait", False)
    reaped = {}
    waitpid = os.waitpid

    def recorded(pid, flags):
        found = waitpid(pid, flags)
        reaped[pid] = found[1]
        return found

    monkeypatch.setattr(context_ahead.os, "waitpid", recorded)
    with BuildContext(str(tmp_path), checksums=store) as ctx:
        got = ctx.digest_unless(["."], big=1)
        assert (got, ctx.hashed_here()) == ((want, 0) if ends == "done" else (None, 0))
    pid = asked["pids"][-1]
    if ends == "stopped":  # the helper was still at work (the walk left at its start)
        assert os.WIFSIGNALED(reaped[pid]) and os.WTERMSIG(reaped[pid]) == signal.SIGKILL
    with pytest.raises(ChildProcessError):
        waitpid(pid, os.WNOHANG)  # reaped


def test_a_source_through_a_symlink_is_walked_whole(tmp_path, store, asked):
    _tree(tmp_path)
    os.symlink(".", tmp_path / "here")
    want = _plain(tmp_path, ["here"])
    _digest(tmp_path, store, ["here"])
    assert _digest(tmp_path, store, ["here"]) == (want, 0)
    assert asked["answers"] and not any(asked["answers"].values())  # nothing opened through it


def test_a_small_context_forks_nothing(tmp_path, store, monkeypatch):
    monkeypatch.setattr(context_module, "RACY_NS", 0)
    started = _recorded(monkeypatch)
    _tree(tmp_path)
    _digest(tmp_path, store)
    assert _digest(tmp_path, store)[1] == 0
    assert started["pids"] == [None, None]
