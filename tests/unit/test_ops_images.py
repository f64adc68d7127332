"""kiln.ops.images: listing, filters, names, rmi semantics and texts, prune, exists, tree."""

from __future__ import annotations

import time

import pytest
from ops_image_factory import add_container, make_image

from kiln.errors import Conflict, InvalidArgument, NotFound
from kiln.ops import images as ops
from kiln.ops.context import Context
from kiln.ops.events import ListSink


@pytest.fixture
def ctx(tmp_path):
    from kiln.store import Store

    store = Store.open(str(tmp_path / "root"))
    c = Context(store=store, events=ListSink())
    yield c
    c.close()


def rows(ctx, **kw):
    return [(repo, tag) for s in ops.list_images(ctx, **kw) for repo, tag in s.repo_tags()]


def test_list_rows_newest_first_with_full_names(ctx):
    make_image(ctx.store, ["a"], ["busybox:1.36"])
    make_image(ctx.store, ["b"], ["localhost/app:v1", "quay.io/x/y:2"])
    assert rows(ctx) == [
        ("localhost/app", "v1"),
        ("quay.io/x/y", "2"),
        ("docker.io/library/busybox", "1.36"),
    ]
    s = ops.list_images(ctx)[0]
    assert s.short_id == s.id.removeprefix("sha256:")[:12]
    j = s.to_json()
    assert j["Id"] == s.id.removeprefix("sha256:") and j["Names"] == s.names
    assert j["Size"] == s.size > 0 and j["Digest"].startswith("sha256:")


def test_tag_moves_a_name_and_leaves_the_old_image_dangling(ctx):
    old = make_image(ctx.store, ["a"], ["localhost/app:latest"])
    new = make_image(ctx.store, ["b"], [])
    assert ops.tag(ctx, new.id, "app") == new.id
    listed = {s.id: s for s in ops.list_images(ctx)}
    assert listed[old.id].repo_tags() == [("<none>", "<none>")]
    assert listed[old.id].dangling
    assert listed[new.id].names == ["localhost/app:latest"]
    dangling = ops.list_images(ctx, filters=["dangling=true"])
    assert [s.id for s in dangling] == [old.id]
    assert [s.id for s in ops.list_images(ctx, filters=["dangling=false"])] == [new.id]


def test_tag_short_names_go_to_localhost_like_podman(ctx):
    img = make_image(ctx.store, ["a"], [])
    ops.tag(ctx, img.id, "bb:2", "quay.io/a/b:c")
    assert sorted(ctx.store.names_of(img.id)) == ["localhost/bb:2", "quay.io/a/b:c"]
    with pytest.raises(InvalidArgument):
        ops.tag(ctx, img.id, "Bad:Name")
    with pytest.raises(NotFound, match="nothere: image not known"):
        ops.tag(ctx, "nothere", "x")


def test_filters_label_reference_before_since(ctx):
    a = make_image(ctx.store, ["a"], ["busybox:latest"], labels={"tier": "base"})
    b = make_image(ctx.store, ["b"], ["localhost/web:1"], labels={"tier": "app", "x": ""})
    c = make_image(ctx.store, ["c"], ["quay.io/org/web:2"])
    ids = lambda **kw: [s.id for s in ops.list_images(ctx, **kw)]  # noqa: E731
    assert ids(filters=["label=tier"]) == [b.id, a.id]
    assert ids(filters=["label=tier=base"]) == [a.id]
    assert ids(filters=["reference=busybox"]) == [a.id]
    assert ids(filters=["reference=*web*"]) == [c.id, b.id]
    assert ids(filters=["reference=web:1"]) == [b.id]
    assert ids(references=["quay.io/org/*"]) == [c.id]
    assert ids(filters=[f"before={c.id}"]) == [b.id, a.id]
    assert ids(filters=[f"since={a.id}"]) == [c.id, b.id]
    assert ids(filters=["since=busybox", "label=tier"]) == [b.id]
    assert ids(filters=[f"id={b.id.removeprefix('sha256:')[:8]}"]) == [b.id]
    with pytest.raises(InvalidArgument, match='unsupported image filter "colour"'):
        ops.list_images(ctx, filters=["colour=red"])
    with pytest.raises(InvalidArgument):
        ops.list_images(ctx, filters=["dangling=maybe"])


def test_filters_label_not_and_until(ctx):
    a = make_image(ctx.store, ["a"], ["a:1"], labels={"tier": "base"}, created=1_600_000_000)
    b = make_image(ctx.store, ["b"], ["b:1"], labels={"tier": "app"}, created=1_600_000_600)
    c = make_image(ctx.store, ["c"], ["c:1"], created=1_600_001_200)
    ids = lambda **kw: [s.id for s in ops.list_images(ctx, **kw)]  # noqa: E731
    assert ids(filters=["label!=tier"]) == [c.id]
    assert ids(filters=["label!=tier=base"]) == [c.id, b.id]
    assert ids(filters=["label!=tier=base", "label=tier"]) == [b.id]
    assert ids(filters=["until=1600000600"]) == [a.id]  # created strictly before
    assert ids(filters=["until=2020-09-13T12:46:40Z"]) == [b.id, a.id]  # c made at 12:46:40
    assert ids(filters=["until=2020-09-13T14:46:40.5+02:00"]) == [c.id, b.id, a.id]
    assert ids(filters=["until=2020-09-13"]) == []
    assert ids(filters=["until=1h"]) == [c.id, b.id, a.id]  # all made long before an hour ago
    with pytest.raises(InvalidArgument, match='invalid filter "until=soon"'):
        ops.list_images(ctx, filters=["until=soon"])


def test_prune_with_until_and_label_not(ctx):
    old = make_image(ctx.store, ["a"], [], labels={"keep": "yes"}, created=1_600_000_000)
    mid = make_image(ctx.store, ["b"], [], created=1_600_000_100)
    new = make_image(ctx.store, ["c"], [], created=1_600_000_200)
    assert ops.prune(ctx, filters=["until=1600000150", "label!=keep"]).removed == [mid.id]
    assert {r.id for r in ctx.store.list_images()} == {old.id, new.id}


def test_labels_always_listed_from_the_image_rows(ctx):
    a = make_image(ctx.store, ["a"], ["la:1"], labels={"tier": "base"})
    b = make_image(ctx.store, ["b"], ["lb:1"])
    assert ctx.store.get_image(a.id).labels == {"tier": "base"}  # recorded at register
    listed = {s.id: s.labels for s in ops.list_images(ctx)}
    assert listed == {a.id: {"tier": "base"}, b.id: {}}
    assert ops.list_images(ctx)[-1].to_json()["Labels"] == {"tier": "base"}
    # an image stored before the store kept labels: read from its config once, then recorded
    ctx.store.db.execute("UPDATE images SET labels=NULL")
    assert ctx.store.get_image(a.id).labels is None
    assert {s.id: s.labels for s in ops.list_images(ctx)} == listed
    assert ctx.store.get_image(a.id).labels == {"tier": "base"}


def test_intermediate_images_are_hidden_without_all(ctx):
    t = 1_750_000_000  # one build: the child's history extends the parent's
    parent = make_image(ctx.store, ["a"], [], created=t)
    child = make_image(ctx.store, ["a", "b"], ["app:1"], created=t)
    assert [s.id for s in ops.list_images(ctx)] == [child.id]
    everything = {s.id: s for s in ops.list_images(ctx, all=True)}
    assert set(everything) == {parent.id, child.id}
    assert everything[parent.id].intermediate and not everything[parent.id].dangling
    assert everything[child.id].parent_id == parent.id


def test_a_step_that_added_only_metadata_hides_its_parent_like_podman(ctx):
    t = 1_750_000_000  # a build step's history is carried verbatim into its child
    step = make_image(ctx.store, ["a"], created=t)
    final = make_image(ctx.store, ["a"], names=["app"], created=t, metadata_steps=("CMD x",))
    other = make_image(ctx.store, ["a"], created=t, metadata_steps=("LABEL y",))
    shown = [s.id for s in ops.list_images(ctx)]
    assert final.id in shown and other.id in shown and step.id not in shown
    assert step.id in [s.id for s in ops.list_images(ctx, all=True)]


def test_inspect_parent_follows_history_like_podman(ctx):
    t = 1_750_000_000
    base = make_image(ctx.store, ["a"], created=t)
    run_step = make_image(ctx.store, ["a", "b"], created=t)
    make_image(ctx.store, ["a", "b"], names=["app"], created=t, metadata_steps=("CMD x",))
    assert ops.inspect_image(ctx, "app")["Parent"] == bare_id(run_step)
    assert ops.inspect_image(ctx, run_step.id)["Parent"] == bare_id(base)


def bare_id(rec) -> str:
    return rec.id.removeprefix("sha256:")


def test_exists(ctx):
    img = make_image(ctx.store, ["a"], ["x:1"])
    assert ops.image_exists(ctx, "x:1")
    assert ops.image_exists(ctx, img.id.removeprefix("sha256:")[:12])
    assert not ops.image_exists(ctx, "x:2")


def test_untag_named_and_all(ctx):
    img = make_image(ctx.store, ["a"], ["a:1", "a:2", "b:1"])
    assert ops.untag(ctx, "a:1", "a:1", "a:2") == [
        "docker.io/library/a:1",
        "docker.io/library/a:2",
    ]
    assert ctx.store.names_of(img.id) == ["docker.io/library/b:1"]
    with pytest.raises(NotFound, match="tag not known"):
        ops.untag(ctx, img.id, "zzz:9")
    assert ops.untag(ctx, img.id) == ["docker.io/library/b:1"]
    assert ctx.store.names_of(img.id) == []
    assert ops.image_exists(ctx, img.id)


# --- rmi ------------------------------------------------------------------------


def test_rmi_of_one_name_of_several_only_untags(ctx):
    img = make_image(ctx.store, ["a"], ["a:1", "a:2"])
    res = ops.remove_images(ctx, ["a:1"])
    assert res.untagged == ["docker.io/library/a:1"] and res.deleted == [] and not res.errors
    assert ops.image_exists(ctx, img.id)
    res = ops.remove_images(ctx, ["a:2"])
    assert res.untagged == ["docker.io/library/a:2"] and res.deleted == [img.id]
    assert not ops.image_exists(ctx, img.id)


def test_rmi_by_id_with_several_names_needs_force(ctx):
    img = make_image(ctx.store, ["a"], ["a:1", "a:2"])
    hexid = img.id.removeprefix("sha256:")
    res = ops.remove_images(ctx, [hexid[:12]])
    assert res.deleted == []
    [err] = res.errors
    assert isinstance(err, InvalidArgument)
    assert str(err) == (
        f'unable to delete image "{hexid}" by ID with more than one tag '
        "([docker.io/library/a:1 docker.io/library/a:2]): please force removal"
    )
    res = ops.remove_images(ctx, [hexid[:12]], force=True)
    assert res.deleted == [img.id]
    assert sorted(res.untagged) == ["docker.io/library/a:1", "docker.io/library/a:2"]


def test_rmi_unknown_image_reports_podman_text_and_others_still_go(ctx):
    img = make_image(ctx.store, ["a"], ["a:1"])
    res = ops.remove_images(ctx, ["nothere", "a:1"])
    assert [str(e) for e in res.errors] == ["nothere: image not known"]
    assert isinstance(res.errors[0], NotFound)
    assert res.deleted == [img.id]
    assert ops.remove_images(ctx, ["nothere"], ignore=True).errors == []
    with pytest.raises(InvalidArgument, match="image name or ID must be specified"):
        ops.remove_images(ctx, [])
    with pytest.raises(InvalidArgument):
        ops.remove_images(ctx, ["x"], all=True)


def test_rmi_refuses_an_image_a_container_uses_unless_forced(ctx):
    img = make_image(ctx.store, ["a"], ["a:1"])
    cid = add_container(ctx.store, img.id)
    res = ops.remove_images(ctx, ["a:1"])
    [err] = res.errors
    assert isinstance(err, Conflict)
    assert str(err) == (
        f"image used by {cid}: image is in use by a container: "
        "consider listing external containers and force-removing image"
    )
    assert ops.image_exists(ctx, "a:1")
    res = ops.remove_images(ctx, ["a:1"], force=True)
    assert res.deleted == [img.id] and res.removed_containers == [cid]
    assert ctx.store.list_containers() == []


def test_rmi_deletes_a_parent_of_child_images_as_podman_does(ctx):
    """podman 4.3 deletes an image whatever its children (their layers stay theirs) and
    reports it untagged, not deleted; the child keeps its data and loses its Parent."""
    t = 1_750_000_000  # one build: the child's history extends the parent's
    parent = make_image(ctx.store, ["a"], ["base:1"], created=t)
    child = make_image(ctx.store, ["a", "b"], ["app:1"], created=t)
    res = ops.remove_images(ctx, ["base:1"])
    assert res.untagged == ["docker.io/library/base:1"] and res.deleted == [] and not res.errors
    assert not ops.image_exists(ctx, parent.id) and ops.image_exists(ctx, child.id)
    assert ops.inspect_image(ctx, "app:1")["Parent"] == ""
    for layer in child.layers:
        assert ctx.store.get_layer(layer)
    other = make_image(ctx.store, ["a"], [], created=t)
    make_image(ctx.store, ["a"], ["labelled:1"], created=t, metadata_steps=("LABEL x=1",))
    res = ops.remove_images(ctx, [other.id])  # by ID, unnamed: gone, nothing to report
    assert res.untagged == [] and res.deleted == [] and not res.errors
    assert not ops.image_exists(ctx, other.id)


def test_rmi_on_the_docker_api_never_deletes_a_parent_of_child_images(ctx):
    t = 1_750_000_000
    parent = make_image(ctx.store, ["a"], ["base:1"], created=t)
    child = make_image(ctx.store, ["a", "b"], ["app:1"], created=t)
    for force in (False, True):
        res = ops.remove_images(ctx, [parent.id], force=force, docker=True)
        [err] = res.errors
        assert isinstance(err, Conflict) and "has dependent child images" in str(err)
        assert ops.image_exists(ctx, parent.id)
    # by its last name: untagged only, the data stays for the child (dockerd's output)
    res = ops.remove_images(ctx, ["base:1"], docker=True)
    assert res.untagged == ["docker.io/library/base:1"] and res.deleted == []
    assert ops.image_exists(ctx, parent.id) and ops.image_exists(ctx, child.id)
    assert [s.id for s in ops.list_images(ctx)] == [child.id]


@pytest.mark.parametrize("docker", [False, True])
def test_rmi_deletes_the_parents_it_leaves_dangling(ctx, docker):
    """podman and dockerd: removing a build's image removes its intermediate images down
    to the first one with a name or another child; noprune keeps them."""
    t = 1_750_000_000
    base = make_image(ctx.store, ["a"], ["base:1"], created=t)
    step = make_image(ctx.store, ["a", "b"], [], created=t)
    mid = make_image(ctx.store, ["a", "b", "c"], [], created=t)
    app = make_image(ctx.store, ["a", "b", "c", "d"], ["app:1"], created=t)
    sibling = make_image(ctx.store, ["a", "b", "x"], ["sibling:1"], created=t)
    res = ops.remove_images(ctx, ["app:1"], docker=docker, prune_parents=False)
    assert res.deleted == [app.id] and ops.image_exists(ctx, mid.id)
    again = make_image(ctx.store, ["a", "b", "c", "d"], ["app:1"], created=t)
    res = ops.remove_images(ctx, ["app:1"], docker=docker)
    assert res.deleted == [again.id, mid.id]  # step stays: the sibling is its child
    assert ops.image_exists(ctx, step.id) and ops.image_exists(ctx, base.id)
    res = ops.remove_images(ctx, ["sibling:1"], docker=docker)
    assert res.deleted == [sibling.id, step.id]  # base has a name: it stays
    assert ops.image_exists(ctx, base.id)


def test_rmi_all_removes_children_before_parents(ctx):
    make_image(ctx.store, ["a"], ["base:1"])
    make_image(ctx.store, ["a", "b"], ["app:1"])
    make_image(ctx.store, ["a", "b", "c"], [])
    res = ops.remove_images(ctx, all=True)
    assert len(res.deleted) == 3 and not res.errors
    assert ctx.store.list_images() == []


def test_rmi_all_keeps_container_images_without_force(ctx):
    keep = make_image(ctx.store, ["a"], ["a:1"])
    make_image(ctx.store, ["b"], ["b:1"])
    add_container(ctx.store, keep.id)
    res = ops.remove_images(ctx, all=True)
    assert len(res.deleted) == 1 and len(res.errors) == 1
    assert [r.id for r in ctx.store.list_images()] == [keep.id]


# --- prune ----------------------------------------------------------------------


def test_prune_removes_dangling_only_then_all_unused(ctx):
    named = make_image(ctx.store, ["a"], ["a:1"])
    dangling = make_image(ctx.store, ["b"], [])
    used = make_image(ctx.store, ["c"], [])
    add_container(ctx.store, used.id)
    blobs = [dangling.manifest_digest, dangling.config_digest, *dangling.layer_blobs]
    on_disk = sum(ctx.store.blob_size(b) for b in blobs)
    time.sleep(0.02)  # a blob written in the deletion's clock tick keeps its grace period
    res = ops.prune(ctx)
    assert res.removed == [dangling.id]
    # what left the disk, at once (the user asked: no grace period), and only that
    assert res.bytes_freed == res.reclaimed == on_disk > 0
    assert res.blobs_removed == 3
    assert not any(ctx.store.has_blob(b) for b in blobs)
    assert {r.id for r in ctx.store.list_images()} == {named.id, used.id}
    res = ops.prune(ctx, all=True)
    assert res.removed == [named.id]
    assert [r.id for r in ctx.store.list_images()] == [used.id]


def test_prune_takes_intermediate_chains_once_their_children_go(ctx):
    make_image(ctx.store, ["a"], [])
    make_image(ctx.store, ["a", "b"], [])
    keep = make_image(ctx.store, ["x"], ["keep:1"])
    res = ops.prune(ctx)
    assert len(res.removed) == 2
    assert [r.id for r in ctx.store.list_images()] == [keep.id]


def test_prune_with_label_filter(ctx):
    a = make_image(ctx.store, ["a"], [], labels={"stage": "tmp"})
    b = make_image(ctx.store, ["b"], [])
    assert ops.prune(ctx, filters=["label=stage=tmp"]).removed == [a.id]
    assert [r.id for r in ctx.store.list_images()] == [b.id]


def test_prune_spares_a_dangling_image_held_by_a_lease(ctx):
    # in-flight work (a build step, a commit before its tag) holds a lease on the unnamed image
    with ctx.store.lease():
        held = make_image(ctx.store, ["a"], [])
        assert ops.prune(ctx).removed == []
        assert ops.prune(ctx, all=True).removed == []
        assert ctx.store.get_image(held.id).id == held.id
    assert ops.prune(ctx).removed == [held.id]


def test_prune_spares_an_image_named_after_it_looked(ctx, monkeypatch):
    # another process tags the image between prune's listing and its delete
    img = make_image(ctx.store, ["a"], [])
    real = ops.summarize

    def summarize_then_tag(*args, **kwargs):
        out = real(*args, **kwargs)
        ctx.store.tag("localhost/late:1", img.id)
        return out

    monkeypatch.setattr(ops, "summarize", summarize_then_tag)
    assert ops.prune(ctx).removed == []
    assert ctx.store.names_of(img.id) == ["localhost/late:1"]


# --- history, inspect, tree -----------------------------------------------------


def test_history_ids_come_from_the_images_own_ancestry(ctx):
    """An image that shares the layers and the history length but is not an ancestor
    (another build of the same step, an image made elsewhere) never lends its ID."""
    t = 1_750_000_000
    stranger = make_image(ctx.store, ["a"], ["stranger:1"], created=t + 5)
    child = make_image(ctx.store, ["a", "b"], ["child:1"], created=t)
    hist = ops.history(ctx, "child:1")
    assert [h.id for h in hist] == [child.id, "<missing>"], f"not {stranger.id}"
    parent = make_image(ctx.store, ["a"], ["parent:1"], created=t)
    hist = ops.history(ctx, "child:1")
    assert [h.id for h in hist] == [child.id, parent.id]
    assert hist[1].tags == ["docker.io/library/parent:1"]


def test_history_inspect_tree(ctx):
    img = make_image(ctx.store, ["a", "b"], ["app:1"])
    hist = ops.history(ctx, "app:1")
    assert [h.created_by for h in hist] == ["ADD b", "ADD a"]
    assert hist[0].id == img.id and hist[1].id == "<missing>"
    assert all(h.size > 0 for h in hist)
    assert hist[0].to_json()["CreatedBy"] == "ADD b"
    obj = ops.inspect_image(ctx, "app:1")
    assert obj["Id"] == img.id.removeprefix("sha256:")
    assert obj["RepoTags"] == ["docker.io/library/app:1"]
    text = ops.tree(ctx, "app:1")
    assert img.id.removeprefix("sha256:")[:12] in text
    with pytest.raises(NotFound):
        ops.inspect_image(ctx, "nope")
