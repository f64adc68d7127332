"""What explaining a cache miss reads from the store: one earlier step's inputs, not every
candidate's (each a compressed blob; a COPY's file lists make them up to 128 KiB)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest

import kiln.store.cache as cache_module
from kiln.build.explain import explain_miss
from kiln.store import Store


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def _inputs(n: int, parent: str = "p") -> dict:
    return {"parent": parent, "instruction": {"@": "Run", "n": n}, "args": {},
            "text": f"RUN echo {n}", "manifests": {}}  # fmt: skip


def test_a_miss_reads_one_earlier_inputs_blob(store, monkeypatch):
    for n in range(40):  # 40 candidates: the same parent, older builds of other steps
        store.put_cache_inputs(f"k{n}", f"step-{n}", "RUN", _inputs(n))
    store.put_cache_inputs("mine", "step-x", "RUN", _inputs(7))
    decompressed = []
    real = zlib.decompress

    def counted(data, *args):
        decompressed.append(len(data))
        return real(data, *args)

    monkeypatch.setattr(cache_module.zlib, "decompress", counted)
    reason = explain_miss(store, "new", "step-x", _inputs(8), instruction="RUN")
    assert reason == "instruction text changed (was: RUN echo 7)"
    assert len(decompressed) == 1, decompressed


def test_a_miss_skips_an_unreadable_earlier_entry(store):
    store.put_cache_inputs("older", "step-x", "RUN", _inputs(6))
    store.put_cache_inputs("newer", "step-x", "RUN", _inputs(7))
    with store.db.transaction() as conn:
        conn.execute("UPDATE cache_inputs SET inputs=? WHERE key='newer'", (b"not zlib",))
    reason = explain_miss(store, "new", "step-x", _inputs(8), instruction="RUN")
    assert reason == "instruction text changed (was: RUN echo 6)"
