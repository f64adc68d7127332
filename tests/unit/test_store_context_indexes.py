"""The context checksum indexes (``<root>/context-index``): a GC removes those whose directory
is gone (a CI job's clone), keeping those still in use."""

from __future__ import annotations

import os

import pytest

from kiln.store import Store
from kiln.store.context_indexes import CONTEXT_INDEX_DIR, LEGACY_MAX_AGE


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def _indexes(store: Store) -> list[str]:
    folder = os.path.join(store.root, CONTEXT_INDEX_DIR)
    return sorted(n for n in os.listdir(folder) if "." not in n) if os.path.isdir(folder) else []


def test_gc_removes_the_indexes_of_directories_that_are_gone(store, tmp_path):
    kept, clone = tmp_path / "repo", tmp_path / "ci-clone"
    kept.mkdir()
    clone.mkdir()
    store.put_context_index(str(kept), [b"KILNCTX1", b"a" * 1000])
    store.put_context_index(str(clone), [b"KILNCTX1", b"b" * 1000])
    assert len(_indexes(store)) == 2
    clone.rmdir()  # the job is done: nothing builds that directory again
    freed = store.gc().bytes_freed
    assert freed >= 1000
    assert store.get_context_index(str(kept)) == b"KILNCTX1" + b"a" * 1000
    assert len(_indexes(store)) == 1
    assert sorted(os.listdir(os.path.join(store.root, CONTEXT_INDEX_DIR))) == [
        *_indexes(store),
        _indexes(store)[0] + ".root",
    ]  # its note of the directory went with it


def test_an_older_kiln_index_goes_only_once_it_is_old(store):
    folder = os.path.join(store.root, CONTEXT_INDEX_DIR)
    os.makedirs(folder)
    young, old = os.path.join(folder, "a" * 32), os.path.join(folder, "b" * 32)
    for path in (young, old):
        with open(path, "wb") as f:
            f.write(b"KILNCTX1 no header")
    os.utime(old, (0, 0))
    assert LEGACY_MAX_AGE > 0
    store.gc()
    assert _indexes(store) == ["a" * 32]
