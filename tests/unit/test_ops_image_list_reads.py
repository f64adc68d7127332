"""``kiln images`` and the API's image lists read no image config: parents, children,
Dangling and intermediate come from the store's index columns (``kiln.store.lineage``),
named images or not (10,000 builds ``FROM`` one base with only metadata of their own cost
the list 5,000 config reads and parses; later every group with an unnamed image was still
read). Prune and varlink's isParent see a named image's same-layer children."""

from __future__ import annotations

import pytest
from ops_image_factory import blob_reads, image_store, make_image  # noqa: F401

from kiln.ops import images as ops
from kiln.ops.context import Context

T = 1_750_000_000


@pytest.fixture
def ctx(image_store):  # noqa: F811
    c = Context(store=image_store)
    yield c
    c.close()


def _blob_reads(fn):
    with blob_reads() as reads:
        result = fn()
    return result, reads


def test_named_images_sharing_a_base_list_without_config_reads(ctx):
    for n in range(30):
        make_image(ctx.store, ["a"], [f"localhost/app-{n}:1"], created=T,
                   metadata_steps=(f"ENV N={n}",))  # fmt: skip
    listed, reads = _blob_reads(lambda: ops.list_images(ctx))
    assert len(listed) == 30 and not any(s.dangling for s in listed)
    assert reads == []


def test_unnamed_images_sharing_a_base_list_without_config_reads(ctx):
    base = make_image(ctx.store, ["a"], [], created=T)
    for n in range(30):
        make_image(ctx.store, ["a"], [], created=T, metadata_steps=(f"ENV N={n}",))
    listed, reads = _blob_reads(lambda: ops.list_images(ctx, all=True))
    assert len(listed) == 31 and reads == []
    assert [s.id for s in listed if not s.dangling] == [base.id]  # the others' parent


def test_an_unnamed_same_layer_parent_is_still_intermediate_and_named_ones_keep_children(ctx):
    step = make_image(ctx.store, ["a"], created=T)  # a build step, unnamed
    make_image(ctx.store, ["a"], ["localhost/app:1"], created=T, metadata_steps=("CMD x",))
    base = make_image(ctx.store, ["b"], ["localhost/base:1"], created=T)
    make_image(ctx.store, ["b"], ["localhost/derived:1"], created=T, metadata_steps=("ENV X=1",))
    shown = {s.id: s for s in ops.list_images(ctx, all=True)}
    assert shown[step.id].intermediate and not shown[step.id].dangling
    assert step.id not in {s.id for s in ops.list_images(ctx)}
    # what prune and varlink's isParent use: the named base has a same-layer child
    exact = {s.id: s for s in ops.summarize(ctx, ctx.store.list_images())}
    assert exact[base.id].has_children and exact[step.id].has_children
    assert {s.id: s for s in ops.list_images(ctx)}[base.id].has_children
    ops.prune(ctx, all=True)  # unused images go, children before parents; all of them here
    assert ctx.store.list_images() == []


def test_parents_and_children_through_deep_and_branching_chains(ctx):
    """Parent and has_children against podman's definition, for images of one build (each
    history the layers' entries): the parent is the image one layer below (its history a
    strict prefix), none when there is no image there, however deep an older ancestor;
    an image has children when an image extends it by one layer."""
    made = []
    for layers in (["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d", "e"], ["a", "x"],
                   ["q"], ["a", "b", "c", "d", "e", "f"], ["a", "x", "y"]):  # fmt: skip
        made.append(make_image(ctx.store, layers, [f"localhost/i{len(made)}:1"], created=T))
    records = ctx.store.list_images()
    summaries = {s.id: s for s in ops.summarize(ctx, records)}
    for r in records:
        chain = tuple(r.layers)
        below = [o.id for o in records if tuple(o.layers) == chain[:-1]]
        above = [o for o in records if tuple(o.layers[:-1]) == chain and len(o.layers) > 1]
        assert summaries[r.id].parent_id == (below[0] if below else ""), r.layers
        assert summaries[r.id].has_children == bool(above), r.layers
    assert summaries[made[3].id].parent_id == ""  # ["a","b","c","d"] is nobody's
    assert summaries[made[6].id].parent_id == made[3].id
