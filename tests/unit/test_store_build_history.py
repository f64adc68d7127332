"""The store's build history tables: cache-key inputs (--explain) and build records, both
bounded and both metadata only."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kiln.errors import InvalidArgument, NotFound
from kiln.store import Store
from kiln.store.build_records import BuildRecordRow


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def _inputs(parent: str = "p", n: int = 0, files: int = 0) -> dict:
    manifests = {"context": {f"f{i}": f"file 644 {os.urandom(8).hex()}" for i in range(files)}}
    return {"parent": parent, "instruction": {"@": "Run", "n": n}, "args": {}, "text": f"RUN {n}",
            "manifests": manifests if files else {}}  # fmt: skip


def test_cache_inputs_are_bounded_per_step_and_in_all(store):
    store.inputs_per_locator, store.inputs_max = 2, 5
    for n in range(4):
        store.put_cache_inputs(f"k{n}", "step-a", "RUN", _inputs(n=n))
    kept = store.cache_inputs_candidates("new", "step-a", "other", {"@": "Run", "n": 99})
    assert [c["key"] for c in kept] == ["k3", "k2"]
    for n in range(10):
        store.put_cache_inputs(f"o{n}", f"step-{n}", "RUN", _inputs(parent=f"p{n}", n=n))
    assert store.db.one("SELECT COUNT(*) FROM cache_inputs")[0] == 5
    assert not store.has_cache_inputs("k3") and store.has_cache_inputs("o9")


def test_cache_inputs_put_untrimmed_are_bounded_by_one_trim(store):
    # a build puts its steps' inputs untrimmed and trims once at its end
    store.inputs_per_locator, store.inputs_max = 2, 5
    for n in range(4):
        store.put_cache_inputs(f"k{n}", "step-a", "RUN", _inputs(n=n), trim=False)
    for n in range(10):
        store.put_cache_inputs(f"o{n}", f"step-{n}", "RUN", _inputs(n=n), trim=False)
    assert store.db.one("SELECT COUNT(*) FROM cache_inputs")[0] == 14  # nothing dropped yet
    store.trim_cache_inputs()
    kept = {r[0] for r in store.db.query("SELECT key FROM cache_inputs")}
    assert kept == {"o5", "o6", "o7", "o8", "o9"}  # the newest 5 in all
    store.inputs_max = 100
    for n in range(4):
        store.put_cache_inputs(f"k{n}", "step-a", "RUN", _inputs(n=n), trim=False)
    store.trim_cache_inputs()
    kept = store.cache_inputs_candidates("new", "step-a", "other", {"@": "Run", "n": 99})
    assert [c["key"] for c in kept] == ["k3", "k2"]  # the newest 2 of the locator


def test_cache_inputs_drop_file_lists_past_the_byte_cap(store):
    store.inputs_max_bytes = 4096
    store.put_cache_inputs("small", "s", "COPY", _inputs(files=10))
    store.put_cache_inputs("big", "b", "COPY", _inputs(n=1, files=2000))
    by_key = {c["key"]: c for c in store.cache_inputs_candidates("x", "s", "p", {})}
    assert len(by_key["small"]["inputs"]["manifests"]["context"]) == 10
    assert by_key["big"]["inputs"]["manifests"] == {}
    assert by_key["big"]["inputs"]["text"] == "RUN 1"  # the rest is kept


def test_cache_inputs_go_with_prune_cache(store):
    store.put_cache_inputs("k", "s", "RUN", _inputs())
    store.prune_cache(unused_for=0.0)
    assert not store.has_cache_inputs("k")


def test_build_records_bounded_resolved_by_prefix_and_pruned(store):
    store.build_records_max = 3
    for n in range(5):
        store.put_build_record(BuildRecordRow(id=f"{n:02d}" + "ab" * 11, created=100.0 + n,
                                              ended=101.0 + n, status="completed",
                                              record={"n": n}))  # fmt: skip
    rows = store.list_build_records()
    assert [r.id[:2] for r in rows] == ["04", "03", "02"]
    assert store.get_build_record().record == {"n": 4}
    assert store.get_build_record("03ab").record == {"n": 3}
    with pytest.raises(NotFound):
        store.get_build_record("00ab")  # trimmed
    with pytest.raises(NotFound):
        store.get_build_record("0")  # too short to be a prefix
    store.build_records_max = 10
    for suffix in ("1", "2"):
        store.put_build_record(BuildRecordRow(id="abc" + suffix * 21, created=50.0, ended=51.0,
                                              status="failed"))  # fmt: skip
    with pytest.raises(InvalidArgument):
        store.get_build_record("abc")  # ambiguous
    store.delete_build_record("abc" + "1" * 21)
    store.delete_build_record("abc" + "2" * 21)
    store.build_records_max = 3
    store.delete_build_record(rows[0].id)
    with pytest.raises(NotFound):
        store.delete_build_record(rows[0].id)
    assert store.prune_build_records(older_than=0.0, keep=1) == 1
    assert [r.id[:2] for r in store.list_build_records()] == ["03"]
