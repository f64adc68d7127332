"""The stat-keyed checksum cache and its two classic holes (see kiln.build.context):

- a file rewritten with the same size and its mtime put back is read again (its ctime
  moved, and nobody can set a ctime);
- a checksum taken right after a change ("racy", as git calls it) is not cached, since a
  second change within the timestamp granularity could leave every time the same.
"""

from __future__ import annotations

import os

from kiln.build import context as context_module
from kiln.build.context import BuildContext
from kiln.store import Store


def _store(tmp_path_factory):
    return Store.open(str(tmp_path_factory.mktemp("kiln-store")))


def test_same_size_same_mtime_rewrite_is_read_again(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(context_module, "RACY_NS", 0)  # trust the file written just now
    store = _store(tmp_path_factory)
    f = tmp_path / "f"
    f.write_bytes(b"version 1")
    first = BuildContext(str(tmp_path), checksums=store).digest(["f"])
    assert str(f) in store.get_checksums(str(tmp_path))  # cached
    before = os.stat(f)
    f.write_bytes(b"version 2")  # same size
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime
    after = os.stat(f)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = BuildContext(str(tmp_path), checksums=store).digest(["f"])
    assert again != first


def test_a_checksum_taken_right_after_a_change_is_not_cached(tmp_path, tmp_path_factory):
    store = _store(tmp_path_factory)
    (tmp_path / "d").mkdir()
    for name in ("a", "b"):
        (tmp_path / "d" / name).write_bytes(name.encode() * 100)
    with BuildContext(str(tmp_path), checksums=store) as ctx:
        first = ctx.digest(["d"])
        assert ctx.known_digest(os.stat(tmp_path / "d" / "a"), "d/a") is None  # the copier hashes
    assert store.get_checksums(str(tmp_path)) == {}
    assert _indexed(store, tmp_path) == {}
    # the next build reads the files again and finds the same digest
    assert BuildContext(str(tmp_path), checksums=store).digest(["d"]) == first


def test_checksums_are_written_once_per_digest(tmp_path, tmp_path_factory, monkeypatch):
    """New checksums go to the store in one write at the end of a digest (the directory
    index), not one write transaction held across all the hashing; none for a rebuild."""
    monkeypatch.setattr(context_module, "RACY_NS", 0)
    store = _store(tmp_path_factory)
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(b"x" * i)
    writes: list[str] = []
    real = store.put_context_index
    monkeypatch.setattr(store, "put_context_index", lambda r, d: (writes.append(r), real(r, d)))
    queries: list[str] = []
    store.db.conn.set_trace_callback(queries.append)
    BuildContext(str(tmp_path), checksums=store).digest(["."])
    assert writes == [str(tmp_path)]
    assert len(_indexed(store, tmp_path)[""].files()) == 50
    BuildContext(str(tmp_path), checksums=store).digest(["."])
    store.db.conn.set_trace_callback(None)
    assert writes == [str(tmp_path)]  # nothing changed: nothing written
    assert not [q for q in queries if q.startswith("BEGIN")]


def test_builder_prune_all_drops_the_context_indexes(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setattr(context_module, "RACY_NS", 0)
    store = _store(tmp_path_factory)
    (tmp_path / "f").write_bytes(b"x")
    BuildContext(str(tmp_path), checksums=store).digest(["."])
    assert _indexed(store, tmp_path)
    store.prune_cache(unused_for=3600)  # written just now: kept
    assert _indexed(store, tmp_path)
    store.prune_cache(unused_for=0.0)  # `kiln builder prune --all`
    assert store.get_context_index(str(tmp_path)) is None


def _indexed(store, root):
    from kiln.build.context_index import DirIndex

    return DirIndex.load(store.get_context_index(str(root)), str(root)).records
