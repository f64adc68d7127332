"""kiln pull/push/login/logout/search with docker:// against a real registry
(Debian's docker-registry) in its four set-ups: plain HTTP, TLS with a private CA
(--cert-dir), htpasswd Basic auth and token auth."""

from __future__ import annotations

import base64
import io
import json
import os
import sys

import pytest

pytest.register_assert_rewrite("fixtures_images")
from fixtures_images import MTIME  # noqa: E402
from kiln.cli.main import run  # noqa: E402
from kiln.errors import InvalidArgument, NotFound  # noqa: E402
from kiln.oci import Digest, Reference  # noqa: E402
from kiln.oci import media_types as mt  # noqa: E402
from kiln.ops.options import PullRequest  # noqa: E402
from kiln.registry import RegistryOptions  # noqa: E402
from registry_env import isolate_registry_env  # noqa: E402

pytest_plugins = ["fixtures_images"]
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

KINDS = ("plain", "tls", "basic", "token")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    monkeypatch.delenv("KILN_ROOT", raising=False)


class Kiln:
    """The kiln CLI in-process, on one store root."""

    def __init__(self, root: str, capsys):
        self.root, self.capsys = root, capsys

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None):
        self.capsys.readouterr()
        old = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            code = run(["--root", self.root, *args])
        finally:
            sys.stdin = old
        out, err = self.capsys.readouterr()
        if ok:
            assert code == 0, f"kiln {' '.join(args)} -> {code}: {err}"
        return code, out, err

    def store(self):
        from kiln.store import Store

        return Store.open(self.root)


def _server(request, kind: str):
    return request.getfixturevalue(f"registry_{kind}")


def flags(server) -> list[str]:
    out = []
    if server.kind == "tls":
        out.append(f"--cert-dir={server.cert_dir}")
    else:
        out.append("--tls-verify=false")
    if server.creds:
        out.append(f"--creds={server.creds}")
    return out


@pytest.fixture
def pusher(tmp_path, capsys, busybox_image):
    kiln = Kiln(busybox_image.store.root, capsys)
    kiln.image = busybox_image
    return kiln


@pytest.fixture
def puller(tmp_path, capsys):
    return Kiln(str(tmp_path / "puller-root"), capsys)


def _client(server, **kw):
    from kiln.registry import RegistryClient, RegistryOptions

    return RegistryClient(
        RegistryOptions(
            tls_verify=server.kind == "tls" or False,
            cert_dir=server.cert_dir,
            creds=server.creds,
            **kw,
        )
    )


def _remote_digest(server, ref: str) -> str:
    with _client(server) as client:
        desc = client.head_manifest(Reference.parse(ref))
    assert desc is not None
    return str(desc.digest)


@pytest.mark.parametrize("kind", KINDS)
def test_push_then_pull_keeps_digests(kind, request, pusher, puller, tmp_path):
    from kiln.image import open_store_image, validate_image

    server = _server(request, kind)
    ref = f"{server.host}/kiln/push-{kind}:v1"
    digestfile = tmp_path / "digest"
    _, _, err = pusher(
        "push", *flags(server), "busybox:latest", f"docker://{ref}", "--digestfile", str(digestfile)
    )
    assert "Writing manifest to image destination" in err
    local = pusher.image
    assert digestfile.read_text() == str(local.manifest_digest)  # pushed byte for byte
    assert _remote_digest(server, ref) == str(local.manifest_digest)

    code, out, err = puller("pull", *flags(server), f"docker://{ref}")
    assert out.strip() == local.id.removeprefix("sha256:")
    assert f"Copying blob {local.layers[0].digest}" in err
    assert "Writing manifest to image destination" in err
    with puller.store() as store:
        img = open_store_image(store, ref)
        assert img.id == local.id and img.manifest_digest == local.manifest_digest
        assert f"{Reference.parse(ref).name}@{local.manifest_digest}" in img.record.repo_digests
        validate_image(img)
    if server.creds:
        assert server.password not in out + err


def test_pull_skips_layers_present_and_policies(registry_plain, pusher, puller, tmp_path):
    from kiln.image import import_tarball
    from kiln.ops import registry as ops
    from kiln.ops.context import open_context
    from kiln.ops.events import ListSink

    ref = f"{registry_plain.host}/kiln/policy:latest"
    fl = flags(registry_plain)
    pusher("push", *fl, "busybox:latest", f"docker://{ref}")
    puller("pull", *fl, ref)
    code, out, err = puller("pull", *fl, ref)
    assert "skipped: already exists" in err  # always: contacts the registry, skips layers
    first = out.strip()

    # a new image under the same tag
    import tarfile

    with tarfile.open(tmp_path / "layer.tar", mode="w") as tar:
        info = tarfile.TarInfo("new.txt")
        data = b"newer\n"
        info.size, info.mtime = len(data), MTIME
        tar.addfile(info, io.BytesIO(data))
    with pusher.store() as store, open(tmp_path / "layer.tar", "rb") as f:
        rec = import_tarball(store, f, names=["newer:latest"], timestamp=MTIME)
    pusher("push", *fl, "newer:latest", f"docker://{ref}")

    sink = ListSink()
    with open_context(puller.root, events=sink) as ctx:
        res = ops.pull(
            ctx, PullRequest.of(ref, policy="missing", options=RegistryOptions(tls_verify=False))
        )
        assert res.image_id == "sha256:" + first and not res.pulled  # no network at all
        assert (
            ops.ensure_image(
                ctx, PullRequest.of(ref, policy="never", options=RegistryOptions(tls_verify=False))
            )
            == "sha256:" + first
        )
        res = ops.pull(
            ctx, PullRequest.of(ref, policy="newer", options=RegistryOptions(tls_verify=False))
        )
        assert res.image_id == rec.id and res.pulled
        res = ops.pull(
            ctx, PullRequest.of(ref, policy="newer", options=RegistryOptions(tls_verify=False))
        )
        assert res.image_id == rec.id and not res.pulled  # digest unchanged: local is current
        with pytest.raises(NotFound, match="pull policy is never"):
            ops.pull(ctx, PullRequest.of(f"{registry_plain.host}/kiln/absent:1", policy="never"))
        assert (
            ops.ensure_image(ctx, PullRequest.of(first[:12], policy="missing")) == "sha256:" + first
        )  # by ID


def test_short_names_resolve_and_ambiguity_is_refused(registry_plain, pusher, puller, tmp_path):
    host = registry_plain.host
    pusher("push", *flags(registry_plain), "busybox:latest", f"docker://{host}/short/bb:1")
    conf = tmp_path / "short.conf"
    conf.write_text(
        f'unqualified-search-registries = ["{host}"]\nshort-name-mode = "enforcing"\n'
        f'[[registry]]\nlocation = "{host}"\ninsecure = true\n'
    )
    os.environ["KILN_REGISTRIES_CONF"] = str(conf)
    _, out, _ = puller("pull", "short/bb:1")
    assert out.strip() == pusher.image.id.removeprefix("sha256:")
    with puller.store() as store:
        assert f"{host}/short/bb:1" in store.get_image(pusher.image.id).names

    conf.write_text(
        f'unqualified-search-registries = ["{host}", "registry.example.org"]\n'
        'short-name-mode = "enforcing"\n'
    )
    code, out, err = puller("pull", "short/other:1", ok=False)
    assert code == 125
    assert "ambiguous" in err and f"{host}/short/other:1" in err
    assert "registry.example.org/short/other:1" in err


def test_all_tags_and_search(registry_plain, pusher, puller):
    host = registry_plain.host
    fl = flags(registry_plain)
    for tag in ("a", "b", "c"):
        pusher("push", *fl, "busybox:latest", f"docker://{host}/kiln/alltags:{tag}")
    _, out, _ = puller("pull", *fl, "--all-tags", f"{host}/kiln/alltags")
    with puller.store() as store:
        names = store.get_image(pusher.image.id).names
    assert {f"{host}/kiln/alltags:{t}" for t in "abc"} <= set(names)

    _, out, _ = puller("search", "--tls-verify=false", f"{host}/alltags")
    assert f"{host}/kiln/alltags" in out and out.startswith("NAME")
    _, out, _ = puller("search", "--tls-verify=false", "--list-tags", f"{host}/kiln/alltags")
    assert sorted(line.split()[1] for line in out.splitlines()[1:]) == ["a", "b", "c"]
    _, out, _ = puller("search", "--tls-verify=false", "--format", "json", f"{host}/alltags")
    assert any(r["Name"] == f"{host}/kiln/alltags" for r in json.loads(out))
    code, _, err = puller(
        "search", "--tls-verify=false", "--filter", "bogus=1", f"{host}/x", ok=False
    )
    assert code == 125 and "invalid filter" in err


def test_format_and_compression_conversion(registry_plain, pusher, puller):
    from kiln.image import open_store_image, validate_image

    host = registry_plain.host
    fl = flags(registry_plain)
    ref = f"{host}/kiln/convert:zstd"
    pusher(
        "push",
        *fl,
        "--format",
        "v2s2",
        "--compression-format",
        "zstd",
        "busybox:latest",
        f"docker://{ref}",
    )
    with _client(registry_plain) as client:
        raw, media_type, _ = client.get_manifest(Reference.parse(ref))
    assert media_type == mt.DOCKER_MANIFEST
    assert json.loads(raw)["layers"][0]["mediaType"] == mt.DOCKER_LAYER_ZSTD
    puller("pull", *fl, ref)
    with puller.store() as store:
        img = open_store_image(store, ref)
        assert img.id == pusher.image.id  # the config (and so the diff_ids) survive
        validate_image(img)


def test_repo_digests_pair_each_repository_with_its_own_digest(registry_plain, pusher, puller):
    # RepoDigests for an image pulled by tag, pushed elsewhere in another format and tagged a
    # third time: each repository with the digest it has the image as there, and (as podman
    # shows it) a repository where it never was with the image's own digest
    host, fl = registry_plain.host, flags(registry_plain)
    pusher("push", *fl, "--format", "oci", "busybox:latest", f"{host}/kiln/rd-a:1")
    pulled = _remote_digest(registry_plain, f"{host}/kiln/rd-a:1")
    puller("pull", *fl, f"{host}/kiln/rd-a:1")
    puller("push", *fl, "--format", "v2s2", f"{host}/kiln/rd-a:1", f"{host}/kiln/rd-b:2")
    pushed = _remote_digest(registry_plain, f"{host}/kiln/rd-b:2")
    assert pushed != pulled  # converted: the same image is another manifest in rd-b
    puller("tag", f"{host}/kiln/rd-a:1", f"{host}/kiln/rd-c:3")  # never pulled or pushed
    _, out, _ = puller("inspect", f"{host}/kiln/rd-c:3")
    (info,) = json.loads(out)
    assert sorted(info["RepoDigests"]) == [
        f"{host}/kiln/rd-a@{pulled}",
        f"{host}/kiln/rd-b@{pushed}",
        f"{host}/kiln/rd-c@{pulled}",
    ]
    assert info["Digest"] == pulled
    assert sorted(info["RepoTags"]) == [
        f"{host}/kiln/rd-a:1",
        f"{host}/kiln/rd-c:3",
    ]  # push tags nothing


def test_cross_repository_mount_and_chunked_upload(registry_plain, pusher, puller):
    from kiln.image import open_store_image, validate_image
    from kiln.ops import registry as ops
    from kiln.ops.context import open_context
    from kiln.ops.events import ListSink

    host = registry_plain.host
    sink = ListSink()
    with open_context(pusher.root, events=sink) as ctx:
        ops.push(
            ctx,
            "busybox:latest",
            f"docker://{host}/mount/src:1",
            options=RegistryOptions(
                tls_verify=False, monolithic_max=64 * 1024, chunk_size=256 * 1024
            ),
        )  # chunked PATCHes
        sink.events.clear()
        ops.push(
            ctx,
            "busybox:latest",
            f"docker://{host}/mount/dst:1",
            options=RegistryOptions(tls_verify=False),
        )
    states = [e.data.get("state") for e in sink.events if e.data.get("state")]
    assert "mounted" in states and "done" not in states[:1]
    puller("pull", "--tls-verify=false", f"{host}/mount/src:1")
    with puller.store() as store:
        validate_image(open_store_image(store, f"{host}/mount/src:1"))


def test_platform_from_an_index(registry_plain, pusher, puller, busybox_rootfs_tar):
    from kiln.image import import_tarball
    from kiln.oci import Descriptor, Index, Platform
    from kiln.snapshot import Snapshotter

    host = registry_plain.host
    fl = flags(registry_plain)
    with pusher.store() as store, open(busybox_rootfs_tar, "rb") as f:
        arm = import_tarball(
            store, f, names=["bb-arm64:1"], platform=Platform.parse("linux/arm64"), timestamp=MTIME
        )
    pusher("push", *fl, "busybox:latest", f"docker://{host}/kiln/multi:amd64")
    pusher("push", *fl, "bb-arm64:1", f"docker://{host}/kiln/multi:arm64")
    children = []
    for tag, plat in (("amd64", "linux/amd64"), ("arm64", "linux/arm64")):
        with _client(registry_plain) as client:
            raw, media_type, digest = client.get_manifest(
                Reference.parse(f"{host}/kiln/multi:{tag}")
            )
        children.append(Descriptor(media_type, digest, len(raw), platform=Platform.parse(plat)))
    index = Index.build(mt.OCI_INDEX, children)
    with _client(registry_plain) as client:
        client.put_manifest(Reference.parse(f"{host}/kiln/multi:all"), index.raw, mt.OCI_INDEX)
    _, out, _ = puller("pull", *fl, "--platform", "linux/arm64", f"{host}/kiln/multi:all")
    assert out.strip() == arm.id.removeprefix("sha256:")
    with puller.store() as store:
        snapshot_root = store.snapshot_root
    if not Platform.host().matches(Platform.parse("linux/arm64")):
        # asked for another platform: stored, not unpacked (as import and load)
        assert Snapshotter(snapshot_root).list_layers() == []
    _, out, _ = puller("pull", *fl, "--arch", "amd64", f"{host}/kiln/multi:all")
    assert out.strip() == pusher.image.id.removeprefix("sha256:")
    if Platform.host().matches(Platform.parse("linux/amd64")):
        assert Snapshotter(snapshot_root).list_layers() != []
    with puller.store() as store:
        digests = store.get_image(pusher.image.id).repo_digests
    assert f"{host}/kiln/multi@{Digest.of_bytes(index.raw)}" in digests  # index and manifest
    assert f"{host}/kiln/multi@{children[0].digest}" in digests


@pytest.mark.parametrize("kind", ("basic", "token"))
def test_login_logout(kind, request, pusher, tmp_path):
    server = _server(request, kind)
    authfile = tmp_path / "run" / "containers" / "auth.json"
    ref = f"docker://{server.host}/kiln/login-{kind}:1"
    code, out, err = pusher(
        "login",
        "--tls-verify=false",
        "-u",
        server.username,
        "--password-stdin",
        server.host,
        stdin=server.password + "\n",
    )
    assert "Login Succeeded!" in out and server.password not in out + err
    assert server.host in json.loads(authfile.read_text())["auths"]
    assert os.stat(authfile).st_mode & 0o077 == 0
    pusher("push", "--tls-verify=false", "busybox:latest", ref)  # the stored credentials
    _, out, _ = pusher("logout", server.host)
    assert f"Removed login credentials for {server.host}" in out
    code, out, err = pusher("push", "--tls-verify=false", "busybox:latest", ref, ok=False)
    assert code == 125 and "authentication required" in err
    code, _, err = pusher("logout", server.host, ok=False)
    assert code == 125 and "not logged in" in err.lower()
    other = tmp_path / "other-auth.json"
    pusher(
        "login",
        "--tls-verify=false",
        "--authfile",
        str(other),
        "-u",
        server.username,
        "-p",
        server.password,
        server.host,
    )
    assert server.host in json.loads(other.read_text())["auths"]


def test_login_password_stdin_reads_all_of_stdin_as_podman(registry_basic, puller, tmp_path):
    """podman joins every line of stdin, each without its newline (and a ``\r`` before
    it); reading the first line only sent half of a password that a pipe split."""
    server, authfile = registry_basic, tmp_path / "auth.json"
    half = len(server.password) // 2
    stdin = server.password[:half] + "\n" + server.password[half:] + "\r\n"
    code, out, err = puller("login", "--tls-verify=false", "--authfile", str(authfile),
                            "-u", server.username, "--password-stdin", server.host,
                            stdin=stdin)  # fmt: skip
    assert "Login Succeeded!" in out and server.password[half:] not in out + err
    entry = json.loads(authfile.read_text())["auths"][server.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{server.username}:{server.password}"


def test_bad_arguments_are_clear(registry_plain, puller):
    from kiln.ops import registry as ops
    from kiln.ops.context import open_context

    with open_context(puller.root) as ctx:
        with pytest.raises(InvalidArgument, match="pull policy"):
            PullRequest.of("x", policy="sometimes")
        with pytest.raises(InvalidArgument, match="--platform cannot be combined"):
            PullRequest.of("x", platform="linux/amd64", arch="arm64")
        with pytest.raises(InvalidArgument, match="use oci, v2s2 or v2s1"):
            ops.push(ctx, "x", "docker://localhost/x", format="v1")


def test_a_gc_during_a_pull_keeps_every_blob_it_fetched(registry_plain, pusher, puller):
    """The pull's blob pool runs each fetch in a copy of the caller's context, so every
    blob joins the pull's lease as it is published: a GC right after each blob lands (no
    grace period, the image not registered yet) sweeps none of them."""
    from kiln.image.registry_source import pull_into_store, resolve_remote

    ref = f"{registry_plain.host}/kiln/gc-during-pull:latest"
    pusher("push", *flags(registry_plain), "busybox:latest", f"docker://{ref}")
    store = puller.store()
    store.blob_grace_seconds = 0
    swept: list[int] = []

    def progress(kind, desc, done, state):  # called on the pool thread that fetched it
        if state == "done":
            swept.append(store.gc().blobs_removed)

    with _client(registry_plain) as client, store.lease() as lease:
        remote = resolve_remote(client, Reference.parse(ref))
        rec = pull_into_store(client, remote, store, [ref], lease=lease, progress=progress)
    assert len(swept) >= 2, "the config and at least one layer were fetched"
    assert swept == [0] * len(swept)
    assert store.fsck() == [] and store.resolve_image(ref).id == rec.id
    store.close()


def test_pull_reusing_old_blobs_survives_gc_and_a_failed_pull_spares_them(
    registry_plain, pusher, puller, monkeypatch
):
    """A GC between a pull's "blob present" check and its use never sweeps the blob
    (it is leased in the same step); a failed pull removes only blobs nobody else uses."""
    import time

    from kiln.image.registry_source import _Pull, pull_into_store, resolve_remote

    ref = f"{registry_plain.host}/kiln/reuse:latest"
    pusher("push", *flags(registry_plain), "busybox:latest", f"docker://{ref}")
    puller("pull", *flags(registry_plain), ref)
    store = puller.store()
    store.blob_grace_seconds = 0
    image_id = store.resolve_image(ref).id
    store.untag(store.names_of(image_id)[0])
    store.delete_image(image_id)  # its blobs are old, unreferenced garbage now
    blobs = list(store.iter_blobs())
    old = time.time() - 3600
    for d in blobs:
        os.utime(store.blob_path(d), (old, old))

    # (digest, found present, still there after the GC) for each reuse check; a GC in
    # one check's window may sweep another old blob not yet checked (then that one is
    # fetched again), so only the blob being checked must survive its own window
    checks: list[tuple[Digest, bool, bool]] = []
    real = store.lease_existing_blob

    def check_then_gc(digest, lease=None):
        present = real(digest, lease)
        store.gc()  # a GC in the old race window, between the check and the use
        checks.append((digest, present, store.has_blob(digest)))
        return present

    monkeypatch.setattr(store, "lease_existing_blob", check_then_gc)
    with _client(registry_plain) as client, store.lease() as lease:
        remote = resolve_remote(client, Reference.parse(ref))
        rec = pull_into_store(client, remote, store, [ref], lease=lease, workers=1)
    assert any(present for _, present, _ in checks), "a reuse check found its old blob"
    assert all(survived for _, present, survived in checks if present)
    assert rec.id == image_id and store.fsck() == []

    # a pull that failed after adding the image's layer undoes only what no one uses
    layer = store.get_layer(rec.layers[0]).blob_digest
    junk = store.put_bytes(b"only the failed pull's")
    with store.lease() as failed:
        job = _Pull(None, None, store, failed, None, 1)
        job.new = [Digest.parse(layer), junk]
        job.forget_new()
    assert store.has_blob(Digest.parse(layer)) and not store.has_blob(junk)
    assert store.fsck() == []
    store.close()


def test_a_pull_by_tag_and_digest_moves_no_tag(registry_plain, pusher, puller):
    """``name:tag@digest``: the digest says what is pulled and the tag is dropped, as podman
    and dockerd drop it; a local ``name:tag`` (here another image) keeps pointing where it did."""
    host = registry_plain.host
    fl = flags(registry_plain)
    ref = f"{host}/kiln/pinned:1"
    pusher("push", *fl, "busybox:latest", f"docker://{ref}")
    digest = pusher.image.manifest_digest
    with puller.store() as store:
        from kiln.image import import_tarball

        other = import_tarball(store, io.BytesIO(b"\0" * 1024), names=[ref], timestamp=MTIME).id
    puller("pull", *fl, f"{ref}@{digest}")
    with puller.store() as store:
        pulled = store.resolve_image(f"{host}/kiln/pinned@{digest}")
        assert pulled.id == pusher.image.id
        assert list(pulled.names) == []
        assert f"{host}/kiln/pinned@{digest}" in pulled.repo_digests
        assert store.resolve_image(ref).id == other


def test_podman_flags_that_change_nothing_are_accepted(registry_plain, pusher, puller):
    """A podman script's --disable-content-trust (a no-op in podman too) and
    --remove-signatures (kiln copies no signatures) run unchanged."""
    fl = flags(registry_plain)
    ref = f"{registry_plain.host}/kiln/noop:1"
    pusher("push", *fl, "--disable-content-trust", "--remove-signatures", "busybox:latest", ref)
    _, out, _ = puller("pull", *fl, "--disable-content-trust", ref)
    assert out.strip() == pusher.image.id.removeprefix("sha256:")
    pusher("manifest", "create", "noop-list:1", "busybox:latest")
    pusher("manifest", "push", *fl, "--remove-signatures", "noop-list:1", f"{ref}-list")


def test_a_single_image_of_another_platform_is_pulled_with_a_warning(
    registry_plain, pusher, puller
):
    """No list to choose from: the image is pulled whatever its platform, as podman pulls
    it, and as podman kiln says it is not the platform asked for."""
    fl = flags(registry_plain)
    ref = f"{registry_plain.host}/kiln/single:1"
    pusher("push", *fl, "busybox:latest", ref)
    own = pusher.image.config.platform
    other = "s390x" if own.architecture != "s390x" else "amd64"
    _, out, err = puller("pull", *fl, "--arch", other, ref)
    assert out.strip() == pusher.image.id.removeprefix("sha256:")
    assert f"image platform ({own}) does not match the expected platform (linux/{other})" in err
    _, _, err = puller("pull", *fl, "--platform", str(own), ref)
    assert "does not match" not in err


def test_creds_without_a_password_and_no_terminal_say_so(registry_basic, pusher):
    """podman asks for the password --creds USER leaves out; with no terminal to ask, kiln
    says so instead of sending an empty password that the registry refuses."""
    ref = f"{registry_basic.host}/kiln/nopass:1"
    for creds in (registry_basic.username, f"{registry_basic.username}:"):
        code, _, err = pusher("push", "--tls-verify=false", "--creds", creds, "busybox:latest",
                              ref, ok=False, stdin="")  # fmt: skip
        assert code == 125
        assert err == (
            f"Error: --creds {registry_basic.username} gives no password and there is no "
            "terminal to ask for it: use --creds USER:PASSWORD\n"
        )
