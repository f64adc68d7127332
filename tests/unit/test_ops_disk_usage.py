"""kiln.ops.disk_usage: layers counted once, shared/unique sizes, containers keep images active."""

from __future__ import annotations

import pytest
from ops_image_factory import add_container, make_image

from kiln.ops.context import Context
from kiln.ops.disk_usage import disk_usage
from kiln.ops.events import ListSink


@pytest.fixture
def ctx(tmp_path):
    from kiln.store import Store

    store = Store.open(str(tmp_path / "root"))
    c = Context(store=store, events=ListSink())
    yield c
    c.close()


def layer_sizes(ctx) -> dict[str, int]:
    return {layer.chain_id: layer.uncompressed_size for layer in ctx.store.list_layers()}


def test_empty_store(ctx):
    usage = disk_usage(ctx)
    assert usage.images == [] and usage.layers_size == 0 and usage.reclaimable == 0


def test_shared_layers_count_once_and_split_shared_from_unique(ctx):
    base = make_image(ctx.store, ["a"], ["base:1"])
    child = make_image(ctx.store, ["a", "b"], ["child:1"])
    alone = make_image(ctx.store, ["c"], ["alone:1"])
    sizes = layer_sizes(ctx)
    usage = disk_usage(ctx)
    assert usage.layers_size == sum(sizes.values())
    assert usage.layers_size < sum(i.summary.size for i in usage.images)
    by_id = {i.summary.id: i for i in usage.images}
    a, b = child.layers
    assert by_id[base.id].shared_size == sizes[a] and by_id[base.id].unique_size == 0
    assert by_id[child.id].shared_size == sizes[a] and by_id[child.id].unique_size == sizes[b]
    assert by_id[alone.id].shared_size == 0
    assert by_id[alone.id].unique_size == by_id[alone.id].summary.size
    assert [i.summary.id for i in usage.images] == [alone.id, child.id, base.id]  # newest first


def test_images_used_by_containers_are_active_and_not_reclaimable(ctx):
    used = make_image(ctx.store, ["a"], ["used:1"])
    make_image(ctx.store, ["a", "b"], ["child:1"])
    add_container(ctx.store, used.id)
    sizes = layer_sizes(ctx)
    usage = disk_usage(ctx)
    assert usage.active_images == 1
    assert [i.summary.containers for i in usage.images if i.active] == [1]
    assert usage.reclaimable == usage.layers_size - sizes[used.layers[0]]
