"""A directory whose own stat key is the one stored with its index record is not listed
again on a rebuild: its recorded names are stat'ed (:func:`kiln.build.context_index.list_dir`).
Whatever changed below it, the digest must stay the one a plain walk gives: an entry
added or renamed moves the directory's key, anything else is found by the stats, and a
key is trusted only when taken ``RACY_NS`` after the directory's last change."""

from __future__ import annotations

import hashlib
import os

import pytest

from kiln.build import context as context_module
from kiln.build import context_index
from kiln.build.context import BuildContext
from kiln.build.context_index import DirIndex
from kiln.store import Store


@pytest.fixture
def store(tmp_path_factory):
    return Store.open(str(tmp_path_factory.mktemp("kiln-store")))


@pytest.fixture
def listed(monkeypatch) -> list[int]:
    """Files and directories written just now are trusted (their keys included); each
    directory a walk lists (getdents) is counted."""
    monkeypatch.setattr(context_module, "RACY_NS", 0)
    monkeypatch.setattr(context_index, "RACY_NS", 0)
    calls: list[int] = []
    listdir = os.listdir

    def counted(path=None):
        if isinstance(path, int):
            calls.append(path)
        return listdir(path)

    monkeypatch.setattr(os, "listdir", counted)
    return calls


def _tree(root) -> None:
    for d in ("a", "b"):
        for i in range(4):
            path = root / d / f"f{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{d}{i}".encode() * 10)
    (root / "b" / "sub").mkdir()
    (root / "b" / "sub" / "x").write_bytes(b"x")
    (root / "b" / "script").write_bytes(b"#!/bin/sh\n")
    os.symlink("script", root / "b" / "link")


def _plain(ctx_dir) -> str:
    """The digest as the generic walk makes it, every file read (no index)."""
    with BuildContext(str(ctx_dir)) as ctx:
        h = hashlib.sha256()
        h.update(b"source .\n")
        for rel, st in ctx.walk("", follow=True):
            h.update(ctx._entry_line(rel, st, follow=rel == ""))
        return "sha256:" + h.hexdigest()


def _digest(ctx_dir, store) -> tuple[str, int]:
    """The digest with the store's index, and how many files it read."""
    with BuildContext(str(ctx_dir), checksums=store) as ctx:
        return ctx.digest(["."]), ctx.hashed_here()


def _records(ctx_dir, store) -> dict:
    root = os.path.abspath(str(ctx_dir))
    return DirIndex.load(store.get_context_index(root), root).records


def _moved(path) -> None:
    """The directory's mtime moved, as the kernel moves it when an entry is added (within
    one tick of the listing it may not: ``RACY_NS`` keeps such a key out of the index,
    and this test trusts keys taken at once)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 1_000_000_000))


def test_an_unchanged_rebuild_lists_no_directory(tmp_path, store, listed):
    _tree(tmp_path)
    want = _plain(tmp_path)
    listed.clear()
    assert _digest(tmp_path, store) == (want, 10)
    assert len(listed) == 4  # the top, a, b and b/sub
    assert all(r.own for r in _records(tmp_path, store).values())
    listed.clear()
    assert _digest(tmp_path, store) == (want, 0)
    assert listed == []


def _rewrite_keeping_times(path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _key(path) -> tuple[int, ...]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode


#: changes that leave the directory's own key as it was: its recorded names, stat'ed, tell
IN_PLACE = {
    "content, size and mtime kept": lambda d: _rewrite_keeping_times(d / "f0.txt", b"b9" * 10),
    "size": lambda d: (d / "f0.txt").write_bytes(b"longer than it was"),
    "mode": lambda d: os.chmod(d / "script", 0o755),
    "subdirectory's entry": lambda d: (d / "sub" / "x").write_bytes(b"xx"),
}


@pytest.mark.parametrize("change", IN_PLACE, ids=list(IN_PLACE))
def test_a_change_in_a_directory_that_kept_its_key_is_found_unlisted(
    tmp_path, store, listed, change
):
    _tree(tmp_path)
    before = _digest(tmp_path, store)[0]
    key = _key(tmp_path / "b")
    IN_PLACE[change](tmp_path / "b")
    assert _key(tmp_path / "b") == key
    want = _plain(tmp_path)
    assert want != before
    listed.clear()
    assert _digest(tmp_path, store)[0] == want
    assert listed == []
    assert _digest(tmp_path, store) == (want, 0)  # and recorded as it now is


def _dir_to_file(path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
    path.write_bytes(b"now a file")


#: changes to a directory's entries (its key moves, unless within the tick it was listed
#: in: its recorded names, stat'ed, tell then)
ENTRIES = {
    "inode, size and times kept": lambda d: _replace_keeping_times(d / "f0.txt", b"b9" * 10),
    "symlink target": lambda d: (os.unlink(d / "link"), os.symlink("f1.txt", d / "link")),
    "removed file": lambda d: os.unlink(d / "f1.txt"),
    "emptied directory": lambda d: os.unlink(d / "sub" / "x"),
    "directory made a file": lambda d: _dir_to_file(d / "sub"),
}


def _replace_keeping_times(path, data: bytes) -> None:
    """Another file (another inode) of the same size and times in its place."""
    st = path.stat()
    new = path.with_name(path.name + ".new")
    new.write_bytes(data)
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)


@pytest.mark.parametrize("change", ENTRIES, ids=list(ENTRIES))
def test_a_changed_entry_changes_the_digest(tmp_path, store, listed, change):
    _tree(tmp_path)
    before = _digest(tmp_path, store)[0]
    ENTRIES[change](tmp_path / "b")
    want = _plain(tmp_path)
    assert want != before
    assert _digest(tmp_path, store)[0] == want
    assert _digest(tmp_path, store) == (want, 0)


#: changes only the directory's own key tells
NEW_NAMES = {
    "new file": lambda d: (d / "new").write_bytes(b""),
    "new directory": lambda d: (d / "newdir").mkdir(),
    "renamed file": lambda d: os.rename(d / "f1.txt", d / "f1.txt~"),
    "new file beside a removed one": lambda d: (
        os.unlink(d / "f1.txt"),
        (d / "g").write_bytes(b""),
    ),
}


@pytest.mark.parametrize("change", NEW_NAMES, ids=list(NEW_NAMES))
def test_a_new_name_in_a_directory_is_found_by_its_moved_key(tmp_path, store, listed, change):
    _tree(tmp_path)
    before = _digest(tmp_path, store)[0]
    NEW_NAMES[change](tmp_path / "b")
    _moved(tmp_path / "b")
    want = _plain(tmp_path)
    assert want != before
    listed.clear()
    assert _digest(tmp_path, store)[0] == want
    assert len(listed) == (2 if change == "new directory" else 1)  # b (and the new one)
    assert _digest(tmp_path, store) == (want, 0)


def test_a_key_taken_just_after_a_change_is_not_kept_until_it_is_old(
    tmp_path, store, listed, monkeypatch
):
    _tree(tmp_path)
    monkeypatch.setattr(context_index, "RACY_NS", 10**18)  # every directory "just changed"
    want = _digest(tmp_path, store)[0]
    assert not any(r.own for r in _records(tmp_path, store).values())
    listed.clear()
    assert _digest(tmp_path, store)[0] == want
    assert len(listed) == 4  # listed: no key vouches for their names
    monkeypatch.setattr(context_index, "RACY_NS", 0)  # old enough now
    assert _digest(tmp_path, store)[0] == want
    assert all(r.own for r in _records(tmp_path, store).values())  # the index learned them
    listed.clear()
    assert _digest(tmp_path, store) == (want, 0)
    assert listed == []


@pytest.mark.parametrize("name", ["..", ".", "", "../../etc", "a/b"])
def test_an_index_naming_what_no_listing_gives_is_ignored(tmp_path, store, listed, name):
    """The walk stats (and opens, for a directory) the names of a record whose directory
    kept its key: a crafted index must not lead it anywhere else."""
    _tree(tmp_path)
    _digest(tmp_path, store)
    root = os.path.abspath(str(tmp_path))
    index = DirIndex.load(store.get_context_index(root), root)
    index.records["b"].names = index.records["b"].names.replace("f2.txt", name, 1)
    store.put_context_index(root, index.dump(root))
    assert _records(tmp_path, store) == {}
    assert _digest(tmp_path, store)[0] == _plain(tmp_path)


def test_a_directory_whose_key_moved_alone_is_listed_once(tmp_path, store, listed):
    """Its entries as they were (a file made and removed): listed, and its new key kept."""
    _tree(tmp_path)
    want = _digest(tmp_path, store)[0]
    _moved(tmp_path / "a")
    listed.clear()
    assert _digest(tmp_path, store) == (want, 0)
    assert len(listed) == 1  # a (the top, whose record holds a's key, is stat'ed only)
    listed.clear()
    assert _digest(tmp_path, store) == (want, 0)
    assert listed == []
