"""``kiln images`` and the API's image lists read no image config for named images that
share their layers (10,000 builds ``FROM`` one base with only metadata of their own cost
the list 5,000 config reads and parses): only a group with an unnamed image, whose
Dangling or intermediate the list shows, has its histories read. Prune and varlink's
isParent still see a named image's same-layer children."""

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
    asked = {s.id: s for s in ops.list_images(ctx, named_parents=True)}
    assert asked[base.id].has_children
    ops.prune(ctx, all=True)  # unused images go, children before parents; all of them here
    assert ctx.store.list_images() == []


def test_parents_and_children_by_layers_through_deep_and_branching_chains(ctx):
    """Parent and has_children by layer chain, against the definition: the parent is the
    latest image whose layers are the longest proper prefix of this one's; an image has
    children when another's layers strictly extend its own."""
    made = []
    for layers in (["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d", "e"], ["a", "x"],
                   ["a", "b"], ["q"], ["a", "b", "c", "d", "e", "f"], ["a", "x", "y"]):  # fmt: skip
        made.append(make_image(ctx.store, layers, [f"localhost/i{len(made)}:1"], created=T))
    records = ctx.store.list_images()
    summaries = {s.id: s for s in ops.summarize(ctx, records, named_parents=False)}
    for r in records:
        chain = tuple(r.layers)
        want_parent = ""
        for n in range(len(chain) - 1, 0, -1):
            owners = [o.id for o in records if tuple(o.layers) == chain[:n]]
            if owners:
                want_parent = owners[-1]  # the latest added
                break
        extended = any(len(o.layers) > len(chain) and tuple(o.layers[: len(chain)]) == chain
                       for o in records)  # fmt: skip
        assert summaries[r.id].parent_id == want_parent, r.layers
        assert summaries[r.id].has_children == extended, r.layers
    assert summaries[made[2].id].parent_id == made[5].id  # two images on ["a", "b"]: the later
    assert summaries[made[3].id].parent_id == made[2].id  # ["a","b","c","d"] is nobody's
