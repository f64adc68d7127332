"""Hostile manifest lists met on a real registry and in an OCI layout: a nested list, an
entry of a wrong media type, an entry naming a child that is not there, an oversized list.
Each is refused with one clear error before or while copying, and the store is left as it
was: no list record, no image the failed copy added."""

from __future__ import annotations

import os

import pytest

from kiln.errors import InvalidArgument, NotFound  # noqa: E402
from kiln.oci import Reference  # noqa: E402
from kiln.oci import media_types as mt  # noqa: E402
from kiln.oci.strict_json import canonical  # noqa: E402
from kiln.ops import file_transfer, manifests  # noqa: E402
from kiln.ops.context import open_context  # noqa: E402
from kiln.ops.options import PullRequest  # noqa: E402
from kiln.registry import RegistryClient, RegistryOptions  # noqa: E402
from kiln.store.indexes import MAX_INDEX_ENTRIES  # noqa: E402
from registry_env import isolate_registry_env  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch)


def entry(img) -> dict:
    return {
        "mediaType": img.manifest.media_type,
        "digest": str(img.manifest_digest),
        "size": len(img.manifest.raw),
        "platform": {"architecture": "amd64", "os": "linux"},
    }


def index_raw(*entries: dict) -> bytes:
    return canonical({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)})


@pytest.fixture
def pushed_image(registry_plain, busybox_image):
    """busybox pushed (by digest) into lists/hostile, and an empty store to pull into."""
    repo = f"{registry_plain.host}/lists/hostile"
    with open_context(busybox_image.store.root) as ctx:
        manifests.create(ctx, "seed", [busybox_image.id])
        manifests.push(
            ctx, "seed", f"docker://{repo}:seed", options=RegistryOptions(tls_verify=False)
        )
    return busybox_image, repo


def put_list(repo: str, tag: str, raw: bytes) -> str:
    ref = f"{repo}:{tag}"
    with RegistryClient(RegistryOptions(tls_verify=False)) as client:
        client.put_manifest(Reference.parse(ref), raw, mt.OCI_INDEX)
    return ref


def assert_store_untouched(root: str) -> None:
    with open_context(root) as ctx:
        assert ctx.store.list_indexes() == []
        assert ctx.store.list_images() == []


def test_a_nested_list_is_refused_before_anything_is_pulled(pushed_image, tmp_path):
    img, repo = pushed_image
    with RegistryClient(RegistryOptions(tls_verify=False)) as client:
        raw, _, digest = client.get_manifest(Reference.parse(f"{repo}:seed"))
    nested = {"mediaType": mt.OCI_INDEX, "digest": str(digest), "size": len(raw)}
    ref = put_list(repo, "nested", index_raw(entry(img), nested))
    root = str(tmp_path / "victim")
    with open_context(root) as ctx, pytest.raises(InvalidArgument, match="nested lists"):
        file_transfer.pull(
            ctx, PullRequest.of(ref, all_platforms=True, options=RegistryOptions(tls_verify=False))
        )
    assert_store_untouched(root)


def test_an_entry_of_a_wrong_media_type_is_refused(pushed_image, tmp_path):
    img, repo = pushed_image
    config = dict(entry(img), mediaType=mt.OCI_CONFIG)
    ref = put_list(repo, "wrongtype", index_raw(entry(img), config))
    root = str(tmp_path / "victim")
    with open_context(root) as ctx, pytest.raises(InvalidArgument, match="media type"):
        file_transfer.pull(
            ctx, PullRequest.of(ref, all_platforms=True, options=RegistryOptions(tls_verify=False))
        )
    assert_store_untouched(root)


def test_a_layout_list_naming_a_missing_child_leaves_no_half_list(busybox_image, tmp_path):
    """The first child copies, the second is missing from the layout: the copied one is
    forgotten again and no list is kept."""
    from kiln.image import open_store_image, write_image

    store = busybox_image.store
    arm = write_image(store, busybox_image, [], busybox_image.config.evolve(architecture="arm64"))
    arm_img = open_store_image(store, arm.id)
    with open_context(store.root) as ctx:
        manifests.create(ctx, "two", [busybox_image.id, arm.id])
        manifests.push(ctx, "two", f"oci:{tmp_path}/layout:v1")
    os.unlink(tmp_path / "layout" / "blobs" / "sha256" / arm_img.manifest_digest.hex)
    root = str(tmp_path / "victim")
    with open_context(root) as ctx, pytest.raises(NotFound):
        file_transfer.pull(ctx, PullRequest.of(f"oci:{tmp_path}/layout:v1", all_platforms=True))
    assert_store_untouched(root)


def test_an_oversized_list_is_refused_before_any_fetch(pushed_image, tmp_path):
    img, repo = pushed_image
    many = [entry(img)] * (MAX_INDEX_ENTRIES + 1)
    ref = put_list(repo, "huge", index_raw(*many))
    root = str(tmp_path / "victim")
    with open_context(root) as ctx, pytest.raises(InvalidArgument, match="over the limit"):
        file_transfer.pull(
            ctx, PullRequest.of(ref, all_platforms=True, options=RegistryOptions(tls_verify=False))
        )
    assert_store_untouched(root)


def test_a_list_pushed_without_its_images_is_refused_by_the_registry(registry_plain, busybox_image):
    """--all=false pushes the list alone: a registry without the images refuses it, and
    kiln reports that as one error (nothing half-written on kiln's side)."""
    with open_context(busybox_image.store.root) as ctx:
        manifests.create(ctx, "alone", [busybox_image.id])
        with pytest.raises(InvalidArgument, match="manifest blob unknown"):
            manifests.push(
                ctx,
                "alone",
                f"docker://{registry_plain.host}/lists/alone:1",
                all=False,
                options=RegistryOptions(tls_verify=False),
            )


def test_a_list_naming_one_image_thousands_of_times_fetches_it_once(pushed_image, tmp_path):
    """Duplicate digests are not work: the image is fetched once however often the list
    names it (each entry cost a manifest fetch and a store copy: 4,000 took 33 s), and the
    list is kept as the registry has it."""
    from kiln.ops.events import ListSink

    img, repo = pushed_image
    ref = put_list(repo, "dups", index_raw(*[entry(img)] * 3000))
    sink = ListSink()
    with open_context(str(tmp_path / "victim"), events=sink) as ctx:
        file_transfer.pull(
            ctx, PullRequest.of(ref, all_platforms=True, options=RegistryOptions(tls_verify=False))
        )
        (rec,) = ctx.store.list_indexes()
        assert rec.manifests == [str(img.manifest_digest)] * 3000
        assert [r.id for r in ctx.store.list_images()] == [img.id]
    fetched = [m for m in sink.messages("step") if m.startswith("Copying image ")]
    assert fetched == [f"Copying image {img.manifest_digest} (1/3000)"]
