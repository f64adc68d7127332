"""Manifest lists end to end: kiln makes a two-platform list, pushes it to a real registry
and to OCI layouts, and skopeo and podman read what it wrote; kiln pulls whole lists back
(--all-platforms) with the same digests; a list keeps its images through rmi + prune; a
push that fails part-way leaves no list in the registry; docker-archive refuses a list."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

import registry_servers  # noqa: E402
from fixtures_images import make_list  # noqa: E402
from kiln.errors import InvalidArgument, KilnError, NotFound  # noqa: E402
from kiln.oci import media_types as mt  # noqa: E402
from kiln.ops import manifests  # noqa: E402
from kiln.ops.context import open_context  # noqa: E402
from kiln.ops.options import PullRequest  # noqa: E402
from kiln.registry import RegistryOptions  # noqa: E402
from registry_env import isolate_registry_env  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
KILN = shutil.which("kiln")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    isolate_registry_env(tmp_path, monkeypatch)


def skopeo(*args: str) -> str:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def kiln(root, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    if KILN is None:
        pytest.skip("the kiln console script is not installed")
    env = dict(os.environ, KILN_ROOT=str(root))
    res = subprocess.run([KILN, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and res.returncode != 0:
        raise AssertionError(f"kiln {' '.join(args)} -> {res.returncode}: {res.stderr}")
    return res


def test_registry_round_trip_read_by_skopeo_and_podman(
    registry_plain, two_platforms, podman, tmp_path
):
    amd, arm = two_platforms
    root = amd.store.root
    make_list(root)
    ref = f"{registry_plain.host}/lists/ml:1"
    with open_context(root) as ctx:
        res = manifests.push(
            ctx, "ml:1", f"docker://{ref}", options=RegistryOptions(tls_verify=False)
        )
        stored = ctx.store.index_bytes(manifests.get(ctx, "ml:1"))
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
    assert raw.encode() == stored  # byte for byte: the same list digest
    doc = json.loads(raw)
    assert doc["mediaType"] == mt.OCI_INDEX
    assert [m["digest"] for m in doc["manifests"]] == [
        str(amd.manifest_digest),
        str(arm.manifest_digest),
    ]
    from kiln.oci import Digest

    assert res.digest == str(Digest.of_bytes(stored))
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path}/sk:1")
    index = json.loads((tmp_path / "sk" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == res.digest
    podman("pull", "--tls-verify=false", "--platform", "linux/arm64", ref)
    inspected = json.loads(podman("image", "inspect", ref).stdout)[0]
    assert inspected["Architecture"] == "arm64"
    assert inspected["Id"] == arm.id.removeprefix("sha256:")
    # kiln pulls the whole list back into an empty store, with the same digests
    other = str(tmp_path / "other")
    with open_context(other) as ctx:
        from kiln.ops import file_transfer, images

        pulled = file_transfer.pull(
            ctx,
            PullRequest.of(
                f"docker://{ref}", all_platforms=True, options=RegistryOptions(tls_verify=False)
            ),
        )
        rec = manifests.get(ctx, ref)
        assert pulled.manifest_digest == rec.digest == res.digest
        assert ctx.store.index_bytes(rec) == stored
        assert {r.id for r in images.list_images(ctx, all=True)} == {rec.id, amd.id, arm.id}
        assert [r.id for r in images.list_images(ctx)] == [rec.id]  # the list, once
        # without --all-platforms a pull still picks one platform
        one = file_transfer.pull(
            ctx,
            PullRequest.of(
                f"docker://{ref}", platform="linux/arm64", options=RegistryOptions(tls_verify=False)
            ),
        )
        assert one.image_id == arm.id


def test_push_v2s2_converts_the_list_and_its_images(registry_plain, two_platforms):
    amd, _ = two_platforms
    make_list(amd.store.root)
    ref = f"{registry_plain.host}/lists/v2s2:1"
    with open_context(amd.store.root) as ctx:
        res = manifests.push(
            ctx, "ml:1", f"docker://{ref}", format="v2s2", options=RegistryOptions(tls_verify=False)
        )
    doc = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    assert doc["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert {m["mediaType"] for m in doc["manifests"]} == {mt.DOCKER_MANIFEST}
    for m in doc["manifests"]:
        child = json.loads(
            skopeo(
                "inspect",
                "--raw",
                "--tls-verify=false",
                f"docker://{ref.rsplit(':', 1)[0]}@{m['digest']}",
            )
        )
        assert child["mediaType"] == mt.DOCKER_MANIFEST
    info = json.loads(
        skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", f"docker://{ref}")
    )
    assert info["Architecture"] == "arm64"
    assert res.images == [m["digest"] for m in doc["manifests"]]


def test_a_list_pushed_without_its_images_says_to_push_with_all(registry_plain, two_platforms):
    """The registry refuses a list whose images it lacks ("manifest blob unknown", buildah
    and podman say no more): kiln names the flag that pushes them too."""
    amd, _ = two_platforms
    make_list(amd.store.root)
    # a repository of its own: the session's registry keeps what this test pushes last
    ref = f"docker://{registry_plain.host}/lists/alone-then-all:1"
    opts = RegistryOptions(tls_verify=False)
    with open_context(amd.store.root) as ctx:
        with pytest.raises(KilnError) as err:
            manifests.push(ctx, "ml:1", ref, all=False, options=opts)
        assert "manifest blob unknown" in str(err.value)
        assert str(err.value).endswith("push with --all)")
        manifests.push(ctx, "ml:1", ref, all=True, options=opts)


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_oci_layouts_hold_the_list_and_round_trip(two_platforms, tmp_path, transport):
    amd, arm = two_platforms
    make_list(amd.store.root)
    path = tmp_path / ("layout" if transport == "oci" else "list.tar")
    dest = f"{transport}:{path}:v1"
    with open_context(amd.store.root) as ctx:
        res = manifests.push(ctx, "ml:1", dest)
        stored = manifests.get(ctx, "ml:1")
    raw = skopeo("inspect", "--raw", dest)
    assert json.loads(raw)["mediaType"] == mt.OCI_INDEX
    assert res.digest == stored.digest
    skopeo("copy", "--all", dest, f"oci:{tmp_path}/copied:v1")  # skopeo reads every child
    with open_context(str(tmp_path / "other")) as ctx:
        from kiln.ops import file_transfer

        pulled = file_transfer.pull(ctx, PullRequest.of(dest, all_platforms=True))
        rec = ctx.store.get_index(pulled.image_id)
        assert rec.digest == stored.digest
        assert rec.manifests == [str(amd.manifest_digest), str(arm.manifest_digest)]


def test_docker_archive_cannot_hold_a_list(two_platforms, tmp_path):
    amd, _ = two_platforms
    make_list(amd.store.root)
    refused = pytest.raises(InvalidArgument, match="docker-archive: cannot hold a manifest list")
    with open_context(amd.store.root) as ctx, refused:
        manifests.push(ctx, "ml:1", f"docker-archive:{tmp_path}/x.tar")
    assert not (tmp_path / "x.tar").exists()


def test_a_push_failing_part_way_leaves_no_list(two_platforms, tmp_path):
    from kiln.oci import Digest, Reference
    from kiln.registry import RegistryClient, RegistryOptions

    amd, arm = two_platforms
    # the second image gets a layer of its own, which is then lost from the store
    from kiln.image import NewLayer, write_image
    from kiln.image.layers import recompress
    from kiln.image.store_image import IngestWriter

    store = amd.store
    import io

    from fixtures_images import child_layer

    with store.ingest("") as ing:
        layer = recompress(io.BytesIO(child_layer()), IngestWriter(ing), "gzip")
        ing.commit()
    from kiln.oci import History

    step = History(created="2024-01-01T00:00:00Z", created_by="RUN lost")
    broken = write_image(store, arm, [NewLayer(layer, step)], arm.config, "oci")
    with open_context(store.root) as ctx:
        manifests.create(ctx, "half", [amd.id, broken.id])
    os.unlink(store.blob_path(Digest.parse(str(layer.digest))))
    with registry_servers.start_registry("plain", str(tmp_path / "reg")) as reg:
        ref = f"{reg.host}/lists/half:1"
        with open_context(store.root) as ctx, pytest.raises(KilnError):
            manifests.push(
                ctx, "half", f"docker://{ref}", options=RegistryOptions(tls_verify=False)
            )
        with RegistryClient(RegistryOptions(tls_verify=False)) as client:
            with pytest.raises(NotFound):
                client.get_manifest(Reference.parse(ref))  # no list names a missing image
            first = Reference.parse(ref).with_digest(str(amd.manifest_digest))
            assert client.get_manifest(first)[2] == amd.manifest_digest  # pushed first


def test_cli_rmi_and_prune_keep_the_list_whole(registry_plain, two_platforms, tmp_path):
    amd, arm = two_platforms
    root = amd.store.root
    amd.store.close()
    listed = kiln(root, "manifest", "create", "ml:cli", "busybox:latest", "busybox:arm64")
    list_id = listed.stdout.strip()
    assert len(list_id) == 64
    # podman's exit codes: 0 a list, 1 nothing by that name, 125 an image's name
    assert kiln(root, "manifest", "exists", "ml:cli", check=False).returncode == 0
    assert kiln(root, "manifest", "exists", "ml:none", check=False).returncode == 1
    refused = kiln(root, "manifest", "exists", "busybox:latest", check=False)
    assert refused.returncode == 125 and "not a manifest list" in refused.stderr
    kiln(root, "manifest", "annotate", "--annotation", "k=v", "ml:cli", str(arm.manifest_digest))
    kiln(root, "rmi", "busybox:arm64")
    kiln(root, "image", "prune", "-a", "-f")
    rows = kiln(root, "images", "--format", "{{.ID}} {{.Repository}}").stdout.splitlines()
    assert f"{list_id[:12]} localhost/ml" in rows
    ref = f"{registry_plain.host}/lists/cli:1"
    kiln(root, "push", "--all", "--tls-verify=false", "ml:cli", f"docker://{ref}")
    doc = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    assert doc["manifests"][1]["annotations"] == {"k": "v"}
    info = json.loads(
        skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", f"docker://{ref}")
    )
    assert info["Architecture"] == "arm64"
    other = tmp_path / "other"
    out = kiln(other, "pull", "--all-platforms", "--tls-verify=false", ref).stdout.split()
    shown = json.loads(kiln(other, "manifest", "inspect", ref).stdout)
    assert shown == doc
    assert kiln(other, "manifest", "exists", ref, check=False).returncode == 0
    assert out[-1][:12] == kiln(other, "images", "-q").stdout.split()[0]  # the list's ID
    removed = kiln(other, "manifest", "rm", ref).stdout.splitlines()
    assert removed[0] == f"Untagged: {ref}"
    assert kiln(other, "manifest", "exists", ref, check=False).returncode == 1


def test_cli_manifest_rm_says_what_went_when_a_name_is_unknown(two_platforms):
    # as podman's manifest rm (and rmi): every list named goes and is reported on stdout, the
    # unknown name is an error, exit 1; an image's name is refused (125) and stays
    amd, _ = two_platforms
    root = amd.store.root
    amd.store.close()
    ids = [kiln(root, "manifest", "create", n).stdout.strip() for n in ("ml:a", "ml:b")]
    res = kiln(root, "manifest", "rm", "ml:a", "nosuch:1", "ml:b", check=False)
    assert res.returncode == 1
    assert res.stderr == "Error: nosuch:1: image not known\n"
    assert sorted(res.stdout.splitlines()) == sorted(
        ["Untagged: localhost/ml:a", "Untagged: localhost/ml:b"] + [f"Deleted: {i}" for i in ids]
    )
    refused = kiln(root, "manifest", "rm", "busybox:latest", check=False)
    assert refused.returncode == 125 and "not a manifest list" in refused.stderr
    assert kiln(root, "image", "exists", "busybox:latest", check=False).returncode == 0


def test_cli_add_from_a_registry_and_inspect_remote(registry_plain, two_platforms, tmp_path):
    amd, arm = two_platforms
    make_list(amd.store.root)
    ref = f"{registry_plain.host}/lists/remote:1"
    with open_context(amd.store.root) as ctx:
        manifests.push(ctx, "ml:1", f"docker://{ref}", options=RegistryOptions(tls_verify=False))
    amd.store.close()
    other = tmp_path / "other"
    remote = json.loads(kiln(other, "manifest", "inspect", "--tls-verify=false", ref).stdout)
    assert len(remote["manifests"]) == 2
    kiln(other, "manifest", "create", "all")
    kiln(other, "manifest", "add", "--all", "--tls-verify=false", "all", f"docker://{ref}")
    kiln(other, "manifest", "create", "one")
    kiln(other, "manifest", "add", "--arch", "arm64", "--tls-verify=false", "one", ref)
    got_all = json.loads(kiln(other, "manifest", "inspect", "all").stdout)
    got_one = json.loads(kiln(other, "manifest", "inspect", "one").stdout)
    assert [m["digest"] for m in got_all["manifests"]] == [m["digest"] for m in remote["manifests"]]
    assert [m["digest"] for m in got_one["manifests"]] == [str(arm.manifest_digest)]
    # --all=false pushes the list alone: the images are already there
    kiln(other, "manifest", "push", "--all=false", "--tls-verify=false", "one", f"{ref}-one")
    kiln(other, "manifest", "push", "--all", "--tls-verify=false", "all", f"docker://{ref}-all")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}-all")
    assert json.loads(raw)["manifests"] == remote["manifests"]


def test_add_all_from_an_oci_layout_keeps_no_extra_list(two_platforms, tmp_path):
    amd, arm = two_platforms
    make_list(amd.store.root)
    with open_context(amd.store.root) as ctx:
        manifests.push(ctx, "ml:1", f"oci-archive:{tmp_path}/l.tar:v1")
    with open_context(str(tmp_path / "other")) as ctx:
        manifests.create(ctx, "mine")
        manifests.add(ctx, "mine", f"oci-archive:{tmp_path}/l.tar:v1", all=True)
        assert [r.names for r in ctx.store.list_indexes()] == [["localhost/mine:latest"]]
        assert manifests.get(ctx, "mine").manifests == [
            str(amd.manifest_digest),
            str(arm.manifest_digest),
        ]


def test_push_to_a_layout_recompresses_with_zstd_and_rewrites_the_list(two_platforms, tmp_path):
    amd, arm = two_platforms
    make_list(amd.store.root)
    dest = f"oci:{tmp_path}/z:v1"
    with open_context(amd.store.root) as ctx:
        res = manifests.push(ctx, "ml:1", dest, compression="zstd")
        stored = manifests.get(ctx, "ml:1")
    assert res.digest != stored.digest  # new children, so a new list
    doc = json.loads(skopeo("inspect", "--raw", dest))
    assert [m["digest"] for m in doc["manifests"]] == res.images
    assert doc["manifests"][1]["platform"]["architecture"] == "arm64"
    for digest in res.images:
        child = json.loads((tmp_path / "z" / "blobs" / "sha256" / digest[7:]).read_text())
        assert {layer["mediaType"] for layer in child["layers"]} == {mt.OCI_LAYER_ZSTD}
    skopeo("copy", "--all", dest, f"oci:{tmp_path}/z2:v1")


def test_a_create_killed_part_way_leaves_no_list(two_platforms, tmp_path):
    """kiln manifest create is SIGKILLed while it waits on a registry that never answers
    (after it has read the local image): no list, no name, and the next create works."""
    import signal
    import socket

    amd, _ = two_platforms
    root = amd.store.root
    amd.store.close()
    if KILN is None:
        pytest.skip("the kiln console script is not installed")
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        env = dict(os.environ, KILN_ROOT=str(root))
        proc = subprocess.Popen(
            [
                KILN,
                "manifest",
                "create",
                "half",
                "busybox:latest",
                f"docker://127.0.0.1:{port}/x/y:1",
                "--tls-verify=false",
            ],  # fmt: skip
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        silent.settimeout(60)
        conn, _ = silent.accept()  # kiln has reached the registry, which never answers
        with conn:
            assert proc.poll() is None  # still waiting on the silent registry
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    assert kiln(root, "manifest", "exists", "half", check=False).returncode == 1
    rows = kiln(root, "images", "-a", "--format", "{{.Repository}}").stdout.split()
    assert "localhost/half" not in rows
    kiln(root, "manifest", "create", "half", "busybox:latest")
    assert kiln(root, "manifest", "exists", "half", check=False).returncode == 0


def test_inspect_of_a_short_name_searches_the_registries_conf_registries(
    registry_plain, two_platforms, tmp_path, monkeypatch
):
    """As podman (and as kiln's pull): a short name is read from registries.conf's
    unqualified-search registries, not from docker.io whatever the configuration says."""
    amd, arm = two_platforms
    make_list(amd.store.root)
    conf = tmp_path / "search.conf"
    conf.write_text(f'unqualified-search-registries = ["{registry_plain.host}"]\n')
    monkeypatch.setenv("KILN_REGISTRIES_CONF", str(conf))
    opts = RegistryOptions(tls_verify=False)
    with open_context(amd.store.root) as ctx:
        manifests.push(ctx, "ml:1", f"docker://{registry_plain.host}/lists/sn:1", options=opts)
        shown = manifests.inspect(ctx, "lists/sn:1", options=opts)
        assert [m["digest"] for m in shown["manifests"]] == [
            str(amd.manifest_digest),
            str(arm.manifest_digest),
        ]
        with pytest.raises(NotFound, match="manifest unknown"):
            manifests.inspect(ctx, "lists/sn:absent", options=opts)
