"""Recording an image costs the same SQL statements however many layers it has (a real
SQLite store, traced): a build's step 20 must not re-insert, re-check and re-lease the whole
chain one row at a time. And what those batched statements write is what the rows say."""

from __future__ import annotations

import hashlib

import pytest

from kiln.errors import NotFound
from kiln.store import ImageRecord, LayerRecord, Store
from sql_trace import statements_during


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def layer(i: int, parent: str | None) -> LayerRecord:
    return LayerRecord(
        chain_id=sha(f"chain{i}"), diff_id=sha(f"diff{i}"), parent=parent,
        blob_digest=sha(f"blob{i}"), media_type="application/vnd.oci.image.layer.v1.tar+gzip",
        size=100 + i, uncompressed_size=1000 + i,
    )  # fmt: skip


def chain(depth: int) -> list[LayerRecord]:
    out: list[LayerRecord] = []
    for i in range(depth):
        out.append(layer(i, out[-1].chain_id if out else None))
    return out


def image(name: str, layers: list[LayerRecord]) -> ImageRecord:
    return ImageRecord(
        id=sha(f"config-{name}"), manifest_digest=sha(f"manifest-{name}"),
        manifest_media_type="application/vnd.oci.image.manifest.v1+json",
        config_digest=sha(f"config-{name}"), created="2024-01-01T00:00:00Z",
        size=sum(r.uncompressed_size for r in layers), layers=[r.chain_id for r in layers],
        platform="linux/amd64", layer_blobs=[r.blob_digest for r in layers],
    )  # fmt: skip


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "root"))
    yield s
    s.close()


def statements_of(store: Store, put) -> list[str]:
    return statements_during(store, put)


def put_step(store: Store, name: str, layers: list[LayerRecord]) -> None:
    """What a build step records: every layer row of the image, the image, its lease."""
    with store.transaction():
        store.put_layers(layers)
        store.put_image(image(name, layers), history=())
        lease = store.current_lease()
        assert lease is not None
        lease.add_image(image(name, layers).id)


def test_putting_an_image_costs_the_same_statements_at_depth_2_and_60(store):
    deep = chain(60)
    with store.lease():
        put_step(store, "warm", deep[:1])
        shallow = statements_of(store, lambda: put_step(store, "two", deep[:2]))
        deeper = statements_of(store, lambda: put_step(store, "sixty", deep))
    assert shallow, "nothing was traced: the test measures nothing"
    assert len(deeper) == len(shallow), (shallow, deeper)


def test_batched_rows_read_back_as_put(store):
    layers = chain(5)
    with store.lease() as lease:
        put_step(store, "five", layers)
        rec = store.get_image(image("five", layers).id)
        held = store.db.query(
            "SELECT kind, ref FROM lease_resources WHERE lease_id=? ORDER BY kind, ref",
            (lease.id,),
        )
    assert rec.layers == [r.chain_id for r in layers]
    assert rec.layer_blobs == [r.blob_digest for r in layers]
    assert [store.get_layer(r.chain_id) for r in layers] == layers
    assert store.uncompressed_sizes([r.chain_id for r in layers] + [sha("unknown")]) == {
        r.chain_id: r.uncompressed_size for r in layers
    }
    want = {("blob", r.blob_digest) for r in layers}
    want |= {("blob", rec.manifest_digest), ("blob", rec.config_digest), ("image", rec.id)}
    assert {(k, r) for k, r in held} == want


def test_a_changed_layer_row_is_updated_and_an_unchanged_one_is_not_rewritten(store):
    first = layer(0, None)
    store.put_layers([first])
    other = LayerRecord(**{**first.__dict__, "blob_digest": sha("zstd"), "size": 7})
    store.put_layers([other])
    assert store.get_layer(first.chain_id) == other
    writes = statements_of(store, lambda: store.put_layers([other]))
    changes = store.db.value("SELECT changes()")
    assert writes and changes == 0


def test_an_image_on_a_layer_the_store_lacks_is_refused_naming_it(store):
    layers = chain(3)
    store.put_layers(layers[:1] + layers[2:])
    with pytest.raises(NotFound, match=layers[1].chain_id):
        store.put_image(image("gap", layers))
