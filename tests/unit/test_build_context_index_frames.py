"""The per-directory checksum index (kiln.build.context_index) is written a directory at a
time: the stored form of a big context's index (~31 MB at 200,000 files) is never made
whole beside the records it comes from, and reads back as the records it was made of,
read a directory at a time too."""

from __future__ import annotations

import io
import zlib

import pytest

from kiln.build import context as context_module
from kiln.build import context_index
from kiln.build.context import BuildContext
from kiln.build.context_index import DirIndex, DirRecord
from kiln.store import Store


def test_the_index_is_stored_a_directory_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(context_module, "RACY_NS", 0)  # the files were written just now
    tree = tmp_path / "ctx"
    for d in range(4):
        (tree / f"d{d}").mkdir(parents=True)
        for i in range(50):
            (tree / f"d{d}" / f"f{i}").write_text(f"{d} {i}\n")
    store = Store.open(str(tmp_path / "store"))
    written = []
    real = store.put_context_index
    monkeypatch.setattr(store, "put_context_index", lambda r, chunks: real(r, (
        written.append(len(c)) or c for c in chunks)))  # fmt: skip
    digest = BuildContext(str(tree), checksums=store).digest(["."])
    stored = store.get_context_index(str(tree))
    assert stored is not None and sum(written) == len(stored)
    assert max(written) < len(stored) / 4  # no piece holds more than one directory's
    index = DirIndex.load(stored, str(tree))
    assert sorted(index.records) == ["", "d0", "d1", "d2", "d3"]
    assert DirIndex.load(b"".join(index.dump(str(tree))), str(tree)).records == index.records
    again = BuildContext(str(tree), checksums=store)
    assert again.digest(["."]) == digest
    assert again.hashed_here() == 0  # every file's checksum from the stored index


def test_the_records_are_taken_under_the_lock_of_the_walks_that_change_them(tmp_path, monkeypatch):
    """Stages of one build digest the same context in threads: while one stores the index,
    another's walk may add, drop or re-filter a record (under the context's lock). The
    records are taken under that lock, so such a change waits: the store neither fails
    ("dictionary changed size during iteration") nor keeps a record half re-filtered. Here
    the other walk tries to change the index at the moment a record is being taken."""
    monkeypatch.setattr(context_module, "RACY_NS", 0)
    tree = tmp_path / "ctx"
    for d in range(3):
        (tree / f"d{d}").mkdir(parents=True)
        (tree / f"d{d}" / "f").write_text(f"{d}\n")
    store = Store.open(str(tmp_path / "store"))
    ctx = BuildContext(str(tree), checksums=store)
    ctx.digest(["."])
    index = ctx._dir_index()
    changed_meanwhile = []

    class Watched(DirRecord):
        def to_tuple(self):
            if ctx._lock.acquire(blocking=False):  # another stage's walk, if it may
                try:
                    index.records["new"] = index.records[""]
                    changed_meanwhile.append(True)
                finally:
                    ctx._lock.release()
            return super().to_tuple()

    index.records["d0"] = Watched(*index.records["d0"].to_tuple())
    index.changed = True
    ctx._persist()
    assert changed_meanwhile == []
    stored = DirIndex.load(store.get_context_index(str(tree)), str(tree))
    assert sorted(stored.records) == ["", "d0", "d1", "d2"]


class _Counted(io.BufferedReader):
    """A file that keeps the size of every read asked of it."""

    asked: list[int]

    def read(self, n=-1, /):
        self.asked.append(n)
        return super().read(n)

    def readinto(self, b, /):
        self.asked.append(len(b))
        return super().readinto(b)


def _indexed(tmp_path, monkeypatch, dirs: int = 4) -> tuple[Store, str]:
    monkeypatch.setattr(context_module, "RACY_NS", 0)  # the files were written just now
    tree = tmp_path / "ctx"
    for d in range(dirs):
        (tree / f"d{d}").mkdir(parents=True)
        for i in range(200):
            (tree / f"d{d}" / f"f{i}").write_text(f"{d} {i}\n")
    store = Store.open(str(tmp_path / "store"))
    BuildContext(str(tree), checksums=store).digest(["."])
    return store, str(tree)


def test_the_index_is_read_a_directory_at_a_time(tmp_path, monkeypatch):
    store, tree = _indexed(tmp_path, monkeypatch)
    stored = store.get_context_index(tree)
    monkeypatch.setattr(context_index, "_CRC_CHUNK", 4096)  # (1 MiB: more than this index)
    asked: list[int] = []
    opened = store.open_context_index

    def counted(root):
        f = _Counted(opened(root).detach())
        f.asked = asked
        return f

    monkeypatch.setattr(store, "open_context_index", counted)
    again = BuildContext(tree, checksums=store)
    records = again._dir_index().records
    assert records == DirIndex.load(stored, tree).records
    assert sorted(records) == ["", "d0", "d1", "d2", "d3"]
    assert asked and max(asked) < len(stored) / 4  # no piece holds more than one directory's


def _flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _past_the_end(data: bytes) -> bytes:
    body = data[8:-4] + (1 << 30).to_bytes(4, "big") + b"x"
    return data[:8] + body + zlib.crc32(body).to_bytes(4, "big")


DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "a flipped byte": lambda data: _flipped(data, len(data) // 2),  # in d0's lines
    "no CRC": lambda data: data[:-4],
    "a frame past the end": _past_the_end,
    "empty": lambda data: b"",
    "another magic": lambda data: b"KILNCTX1" + data[8:],
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_index_file_reads_as_empty(tmp_path, monkeypatch, damage):
    store, tree = _indexed(tmp_path, monkeypatch, dirs=1)
    path = tmp_path / "index"
    path.write_bytes(DAMAGE[damage](store.get_context_index(tree)))
    with open(path, "rb") as f:
        assert DirIndex.read(f, tree).records == {}
    path.write_bytes(store.get_context_index(tree))
    with open(path, "rb") as f:
        assert sorted(DirIndex.read(f, tree).records) == ["", "d0"]
