"""kiln.ops.manifests: the list API a multi-platform build calls and `kiln manifest` uses."""

from __future__ import annotations

import json
import threading

import pytest
from ops_image_factory import make_image

from kiln.errors import AlreadyExists, InvalidArgument, NotFound
from kiln.oci import Platform
from kiln.oci import media_types as mt
from kiln.ops import manifests
from kiln.ops.context import Context
from kiln.ops.events import ListSink


@pytest.fixture
def ctx(tmp_path):
    from kiln.store import Store

    store = Store.open(str(tmp_path / "root"))
    store.blob_grace_seconds = 0
    c = Context(store=store, events=ListSink())
    yield c
    c.close()


@pytest.fixture
def two(ctx):
    amd = make_image(ctx.store, ["a"], ["localhost/app:amd64"])
    arm = make_image(ctx.store, ["b"], ["localhost/app:arm64"], architecture="arm64", variant="v8")
    return amd, arm


def test_create_from_images_takes_platforms_from_their_configs(ctx, two):
    amd, arm = two
    rec = manifests.create(ctx, "app:list", ["app:amd64", arm.id])
    assert rec.names == ["localhost/app:list"]
    doc = manifests.inspect(ctx, "app:list")
    assert doc["mediaType"] == mt.OCI_INDEX
    assert [m["digest"] for m in doc["manifests"]] == [amd.manifest_digest, arm.manifest_digest]
    assert doc["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert doc["manifests"][1]["platform"] == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
    }
    assert manifests.exists(ctx, "app:list")
    assert not manifests.exists(ctx, "app:amd64")  # an image is not a list
    assert not manifests.exists(ctx, "nothing")


def test_create_v2s2_makes_a_docker_manifest_list(ctx, two):
    manifests.create(ctx, "l", format="v2s2")
    assert manifests.inspect(ctx, "l")["mediaType"] == mt.DOCKER_MANIFEST_LIST
    with pytest.raises(
        InvalidArgument, match="--format .bogus. is invalid: use one of oci, docker"
    ):
        manifests.create(ctx, "m", format="bogus")


def test_create_refuses_a_name_in_use_unless_amend(ctx, two):
    amd, arm = two
    first = manifests.create(ctx, "l", [amd.id])
    with pytest.raises(AlreadyExists, match="already in use"):
        manifests.create(ctx, "l")
    with pytest.raises(AlreadyExists, match="already in use"):
        manifests.create(ctx, "app:amd64")  # an image's name
    again = manifests.create(ctx, "l", [arm.id], amend=True)
    assert again.id == first.id
    assert again.manifests == [amd.manifest_digest, arm.manifest_digest]


def test_add_overrides_annotate_and_remove(ctx, two):
    amd, arm = two
    rec = manifests.create(ctx, "l")
    manifests.add(ctx, "l", "app:amd64", annotations={"a": "b"})
    manifests.add(ctx, "l", arm.id, arch="arm", variant="v7", os_version="1", features=["sse4"])
    manifests.add(ctx, "l", "app:amd64")  # already there: not twice
    doc = manifests.inspect(ctx, rec.id)
    assert len(doc["manifests"]) == 2
    assert doc["manifests"][0]["annotations"] == {"a": "b"}
    assert doc["manifests"][1]["platform"] == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v7",
        "os.version": "1",
        "features": ["sse4"],
    }
    manifests.annotate(
        ctx,
        "l",
        arm.manifest_digest,
        os="freebsd",
        annotations={"c": "d"},
        index_annotations={"top": "1"},
    )
    doc = manifests.inspect(ctx, "l")
    assert doc["manifests"][1]["platform"]["os"] == "freebsd"
    assert doc["manifests"][1]["annotations"] == {"c": "d"}
    assert doc["annotations"] == {"top": "1"}
    manifests.remove(ctx, "l", amd.manifest_digest)
    assert manifests.get(ctx, "l").manifests == [arm.manifest_digest]
    with pytest.raises(NotFound, match="no such image in manifest list"):
        manifests.remove(ctx, "l", amd.manifest_digest)


def test_add_replace_drops_the_old_image_of_the_same_platform(ctx):
    old = make_image(ctx.store, ["old"], architecture="arm64")
    new = make_image(ctx.store, ["new"], architecture="arm64")
    manifests.create(ctx, "l", [old.id])
    manifests.add(ctx, "l", new.id, replace=True)
    assert manifests.get(ctx, "l").manifests == [new.manifest_digest]


def test_a_list_added_without_all_gives_the_host_platform_entry(ctx, two):
    amd, arm = two
    manifests.create(ctx, "both", [amd.id, arm.id])
    manifests.create(ctx, "one", ["both"])
    manifests.create(ctx, "arm", [])
    manifests.add(ctx, "arm", "both", arch="arm64")
    manifests.create(ctx, "all", ["both"], all=True)
    assert manifests.get(ctx, "arm").manifests == [arm.manifest_digest]
    assert manifests.get(ctx, "all").manifests == [amd.manifest_digest, arm.manifest_digest]


def test_os_alone_picks_from_a_list_by_a_pulls_rule(ctx, two):
    # --os without --arch: the host's architecture, as `kiln pull --os` picks
    amd, arm = two
    manifests.create(ctx, "both", [amd.id, arm.id])
    manifests.create(ctx, "picked", [])
    manifests.add(ctx, "picked", "both", os="linux")
    want = arm if Platform.host().architecture == "arm64" else amd
    assert manifests.get(ctx, "picked").manifests == [want.manifest_digest]


def test_rm_removes_lists_and_keeps_their_images(ctx, two):
    amd, _ = two
    rec = manifests.create(ctx, "l", [amd.id])
    assert manifests.rm(ctx, "l") == [(["localhost/l:latest"], rec.id)]
    assert ctx.store.resolve_image("app:amd64").id == amd.id
    with pytest.raises(NotFound):
        manifests.rm(ctx, "l")


def test_concurrent_adds_both_land(ctx):
    images = [make_image(ctx.store, [f"l{i}"], architecture=f"arch{i}") for i in range(6)]
    manifests.create(ctx, "l")
    errors = []

    def add(rec):
        try:
            manifests.add(ctx, "l", rec.id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(r,)) for r in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(manifests.get(ctx, "l").manifests) == sorted(r.manifest_digest for r in images)


def test_create_with_a_missing_image_stores_nothing(ctx, two):
    amd, _ = two
    with pytest.raises(NotFound):
        manifests.create(ctx, "l", [amd.id, "containers-storage:nope"])
    assert ctx.store.list_indexes() == []


def test_inspect_of_an_image_says_it_is_not_a_list(ctx, two):
    with pytest.raises(InvalidArgument, match="not a manifest list"):
        manifests.inspect(ctx, "app:amd64")
    assert json.dumps(manifests.inspect(ctx, manifests.create(ctx, "l").id))


def test_images_shows_a_list_once_and_hides_its_unnamed_images(ctx):
    from kiln.ops import images

    a = make_image(ctx.store, ["a"])
    b = make_image(ctx.store, ["b"], architecture="arm64")
    rec = manifests.create(ctx, "l", [a.id, b.id])
    rows = images.list_images(ctx)
    assert [(r.id, r.names, r.is_list) for r in rows] == [(rec.id, ["localhost/l:latest"], True)]
    assert rows[0].size == len(ctx.store.index_bytes(rec))
    assert {r.id for r in images.list_images(ctx, all=True)} == {rec.id, a.id, b.id}
    assert images.list_images(ctx, filters=["dangling=true"]) == []


def test_rmi_and_prune_keep_what_a_list_needs(ctx):
    from kiln.oci import Digest
    from kiln.ops import images

    a = make_image(ctx.store, ["a"], ["localhost/a:1"])
    b = make_image(ctx.store, ["b"], architecture="arm64")  # unnamed: only the list holds it
    rec = manifests.create(ctx, "l", [a.id, b.id])
    assert images.prune(ctx).removed == []  # b is not dangling: the list names it
    images.raise_first_error(images.remove_images(ctx, ["a:1"]))
    images.prune(ctx, all=True)
    for r in (a, b):
        for blob in [r.manifest_digest, r.config_digest, *r.layer_blobs]:
            assert ctx.store.has_blob(Digest.parse(blob)), blob
    assert manifests.get(ctx, "l").manifests == [a.manifest_digest, b.manifest_digest]
    result = images.remove_images(ctx, ["l"])
    assert (result.untagged, result.deleted) == (["localhost/l:latest"], [rec.id])
    ctx.collect_garbage()
    assert not ctx.store.has_blob(Digest.parse(a.layer_blobs[0]))


def test_tag_names_a_list(ctx, two):
    from kiln.ops import images

    amd, _ = two
    rec = manifests.create(ctx, "l", [amd.id])
    assert images.tag(ctx, "l", "other:2") == rec.id
    assert manifests.get(ctx, "other:2").names == ["localhost/l:latest", "localhost/other:2"]
    images.raise_first_error(images.remove_images(ctx, ["other:2"]))  # one of two names
    assert manifests.get(ctx, rec.id).names == ["localhost/l:latest"]


def test_a_list_name_resolves_to_its_image_for_a_platform(ctx, two):
    from kiln.oci import Platform

    amd, arm = two
    manifests.create(ctx, "l", [amd.id, arm.id])
    host = ctx.store.resolve_image("l")  # what run, save and FROM get, as with podman
    assert host.id == (arm.id if Platform.host().architecture == "arm64" else amd.id)
    assert ctx.store.resolve_image("l", "linux/arm64").id == arm.id
    with pytest.raises(NotFound, match="no image for platform linux/s390x"):
        ctx.store.resolve_image("l", "linux/s390x")


def test_a_list_id_resolves_as_its_name_does(ctx, two):
    # `kiln images` lists a list by its ID: `kiln history ID` (and run, save, FROM) got
    # "image not known" for it while its name worked
    from kiln.ops import images

    amd, arm = two
    rec = manifests.create(ctx, "l", [amd.id, arm.id])
    by_name = ctx.store.resolve_image("l").id
    bare = rec.id.removeprefix("sha256:")
    for spelling in (rec.id, bare, bare[:12], "sha256:" + bare[:12]):
        assert ctx.store.resolve_image(spelling).id == by_name, spelling
    assert ctx.store.resolve_image(rec.id, "linux/arm64").id == arm.id
    assert images.history(ctx, bare[:12])[0].id == by_name
    assert manifests.get(ctx, rec.id).id == rec.id  # the list verbs still get the list
    images.raise_first_error(images.remove_images(ctx, [rec.id]))  # rmi removes the list
    assert ctx.store.get_image(amd.id) and ctx.store.get_image(arm.id)
    with pytest.raises(NotFound, match="image not known"):
        ctx.store.resolve_image(rec.id)


def test_untag_of_a_list_removes_the_list_names_only(ctx, two):
    from kiln.ops import images

    amd, _ = two
    manifests.create(ctx, "l", [amd.id])
    assert images.untag(ctx, "l") == ["localhost/l:latest"]
    assert ctx.store.names_of(amd.id) == ["localhost/app:amd64"]


def test_concurrent_creates_of_one_name_leave_one_list(ctx, two):
    amd, _ = two
    outcomes = []

    def create():
        try:
            outcomes.append(manifests.create(ctx, "race", [amd.id]).id)
        except AlreadyExists:
            outcomes.append("refused")

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count("refused") == 5
    assert [r.names for r in ctx.store.list_indexes()] == [["localhost/race:latest"]]


def test_an_image_s_name_is_refused_where_a_list_is_needed(ctx, two, tmp_path):
    """As podman: "NAME: image is not a manifest list" (was "manifest list not known" or,
    for rm, "image not known"); the image stays."""
    amd, arm = two
    manifests.create(ctx, "l", [amd.id])
    refused = pytest.raises(InvalidArgument, match="app:amd64: image is not a manifest list")
    with refused:
        manifests.add(ctx, "app:amd64", arm.id)
    with refused:
        manifests.annotate(ctx, "app:amd64", arm.manifest_digest, annotations={"a": "b"})
    with refused:
        manifests.remove(ctx, "app:amd64", arm.manifest_digest)
    with refused:
        manifests.push(ctx, "app:amd64", f"oci:{tmp_path}/layout")
    with refused:
        manifests.rm(ctx, "app:amd64", "l")
    assert not (tmp_path / "layout").exists()
    assert ctx.store.list_indexes() == []  # the list named beside it went
    assert ctx.store.resolve_image("app:amd64").id == amd.id
    with pytest.raises(NotFound, match="nosuch:1: image not known"):
        manifests.rm(ctx, "nosuch:1")


def test_exists_strict_tells_an_image_and_a_bad_name_from_nothing(ctx, two):
    """``kiln manifest exists``: 0 a list, 1 nothing, 125 an image's name or no valid name
    (podman 4.3's codes); the library's plain ``exists`` keeps answering False."""
    rec = manifests.create(ctx, "l", [two[0].id])
    assert manifests.exists(ctx, "l", strict=True)
    assert manifests.exists(ctx, rec.id[7:19], strict=True)
    assert not manifests.exists(ctx, "nope", strict=True)
    assert not manifests.exists(ctx, "abc123", strict=True)  # an ID prefix nothing has
    with pytest.raises(InvalidArgument, match="not a manifest list"):
        manifests.exists(ctx, "app:amd64", strict=True)
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        manifests.exists(ctx, "BAD::name", strict=True)
    assert not manifests.exists(ctx, "app:amd64")
    assert not manifests.exists(ctx, "BAD::name")


def test_inspect_prints_platform_fields_in_podman_s_order(ctx, two):
    """podman prints a platform in Go's field order; the stored list is canonical (sorted)."""
    _, arm = two
    manifests.create(ctx, "l", [arm.id])
    manifests.annotate(
        ctx, "l", arm.manifest_digest, os_version="10.0", features=["f1"], os_features=["o1"]
    )
    shown = manifests.inspect(ctx, "l")
    assert list(shown["manifests"][0]) == ["mediaType", "size", "digest", "platform"]
    assert list(shown["manifests"][0]["platform"]) == [
        "architecture",
        "os",
        "os.version",
        "os.features",
        "variant",
        "features",
    ]


@pytest.mark.parametrize("all_", [False, True])
def test_add_from_a_transport_has_one_result_the_list_s(ctx, two, tmp_path, all_):
    """The CLI prints results: ``manifest add``/``create`` of a transport's image printed
    the copied image's ID (or, with --all, the copied list's) before the list's."""
    amd, arm = two
    manifests.create(ctx, "src", [amd.id, arm.id])
    manifests.push(ctx, "src", f"oci:{tmp_path}/layout:v1")
    made = manifests.create(ctx, "l")
    ctx.events.events.clear()
    manifests.add(ctx, "l", f"oci:{tmp_path}/layout:v1", all=all_)
    assert [e.data["id"] for e in ctx.events.of_kind("result")] == [made.id]
    assert ctx.events.of_kind("step")  # the copy's progress still shows


def test_a_list_naming_a_digest_many_times_copies_it_once(ctx, two, tmp_path):
    """A list may name one image many times (up to the entry cap): each image is pushed
    and pulled once, not once per entry (4,000 entries of one image took 33 s to pull
    and 69 s to push to a local registry); every entry is kept, and rewritten alike."""
    from kiln.oci.strict_json import canonical
    from kiln.ops import file_transfer
    from kiln.ops.context import Context
    from kiln.ops.options import PullRequest
    from kiln.store import Store

    entries = json.loads(ctx.store.index_bytes(manifests.create(ctx, "two", [r.id for r in two])))
    doc = {**entries, "manifests": entries["manifests"] * 50}
    ctx.store.put_index(canonical(doc), mt.OCI_INDEX, names=["localhost/dup:1"])

    def copies(sink: ListSink) -> list[str]:
        return [m for m in sink.messages("step") if m.startswith("Copying image ")]

    ctx.events.events.clear()
    res = manifests.push(ctx, "dup:1", f"oci:{tmp_path}/layout:v1", compression="zstd")
    assert len(copies(ctx.events)) == 2
    assert len(res.images) == 100 and len(set(res.images)) == 2
    assert res.images[:2] * 50 == res.images  # each duplicate rewritten as its first

    sink = ListSink()
    other = Context(store=Store.open(str(tmp_path / "other")), events=sink)
    try:
        file_transfer.pull(other, PullRequest.of(f"oci:{tmp_path}/layout:v1", all_platforms=True))
        assert len(copies(sink)) == 2
        (rec,) = other.store.list_indexes()
        assert (
            rec.digest == res.digest
            and len(json.loads(other.store.index_bytes(rec))["manifests"]) == 100
        )
    finally:
        other.close()


def test_push_as_v2s2_drops_the_index_s_own_annotations_with_a_warning(ctx, two, tmp_path):
    """A Docker manifest list has no annotations of its own (podman drops them when it
    converts); the entries keep theirs."""
    amd, _ = two
    manifests.create(ctx, "l", [amd.id], annotations={"top": "1"})
    manifests.annotate(ctx, "l", amd.manifest_digest, annotations={"e": "1"})
    ctx.events.events.clear()
    res = manifests.push(ctx, "l", f"oci:{tmp_path}/layout:v1", format="v2s2")
    doc = json.loads((tmp_path / "layout" / "blobs" / "sha256" / res.digest[7:]).read_bytes())
    assert doc["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert "annotations" not in doc
    assert doc["manifests"][0]["annotations"] == {"e": "1"}
    assert any("no annotations" in m for m in ctx.events.messages("warning"))
    kept = manifests.push(ctx, "l", f"oci:{tmp_path}/oci:v1", format="oci")
    assert kept.digest == manifests.get(ctx, "l").digest  # as stored, annotations and all
