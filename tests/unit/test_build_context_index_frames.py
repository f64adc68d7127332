"""The per-directory checksum index (kiln.build.context_index) is written a directory at a
time: the stored form of a big context's index (~31 MB at 200,000 files) is never made
whole beside the records it comes from, and reads back as the records it was made of."""

from __future__ import annotations

from kiln.build import context as context_module
from kiln.build.context import BuildContext
from kiln.build.context_index import DirIndex
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
