"""One fleet, one cache: two kiln stores ("machines") share build cache through a real
registry (Debian's docker-registry), an OCI layout directory, or the pushed image itself.

No RUN may execute on a cache hit: every RUN appends to a file on a host directory
bind-mounted into it (``--volume``, which is not part of any cache key), so a hit leaves
the file unchanged and a miss shows up as a new line.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from build_fixtures import ROOT_MARKS  # noqa: E402
from fixtures_images import MTIME, busybox_rootfs_tar  # noqa: E402, F401
from kiln.registry import RegistryOptions
from registry_env import isolate_registry_env  # noqa: E402

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(600)]


DOCKERFILE = """\
FROM {base} AS tool
RUN echo tool-stage >> /witness/log && echo tool > /tool
FROM {base}
COPY a.txt /a.txt
ENV GREETING=hi
RUN echo a-step >> /witness/log && cat /a.txt > /copy-of-a
COPY b.txt /b.txt
RUN echo b-step >> /witness/log && cat /b.txt > /copy-of-b
COPY --from=tool /tool /tool
LABEL done=yes
"""


class Machine:
    """One kiln store with its own ops Context: a build machine of the fleet."""

    def __init__(self, root: Path):
        from kiln.ops.context import Context
        from kiln.ops.events import ListSink
        from kiln.store import Store

        self.store = Store.open(str(root))
        self.events = ListSink()
        self.ctx = Context(store=self.store, events=self.events)

    def build(self, context: str, witness: Path, **options):
        from kiln.build.options import BuildOptions
        from kiln.ops.build import build

        self.events.events.clear()
        opts = BuildOptions(
            context=context,
            volumes=[f"{witness}:/witness"],
            registry=options.pop("registry", RegistryOptions(tls_verify=False)),
            **options,
        )
        return build(self.ctx, opts)

    def messages(self, type_: str) -> list[str]:
        return [e.message for e in self.events.events if e.data.get("type") == type_]

    def warnings(self) -> list[str]:
        return [e.message for e in self.events.events if e.kind == "warning"]

    def hit_steps(self) -> list[str]:
        """The steps answered from a cache (the STEP line before each ``Using cache``)."""
        steps = [e for e in self.events.events if e.data.get("type") in ("step", "cache")]
        return [
            steps[i - 1].message.split(": ", 1)[1]
            for i, e in enumerate(steps)
            if e.data.get("type") == "cache" and i and steps[i - 1].data.get("type") == "step"
        ]

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    monkeypatch.delenv("KILN_ROOT", raising=False)


@pytest.fixture
def fleet(tmp_path):
    made: list[Machine] = []

    def machine(name: str) -> Machine:
        m = Machine(tmp_path / f"store-{name}")
        made.append(m)
        return m

    yield machine
    for m in made:
        m.close()


@pytest.fixture(scope="module")
def base_ref(registry_plain, busybox_rootfs_tar, tmp_path_factory):  # noqa: F811
    """busybox pushed to the registry: every machine pulls its base from there."""
    from kiln.image import import_tarball
    from kiln.ops.context import Context
    from kiln.ops.registry import push
    from kiln.store import Store

    store = Store.open(str(tmp_path_factory.mktemp("seed") / "root"))
    ctx = Context(store=store)
    try:
        with open(busybox_rootfs_tar, "rb") as f:
            rec = import_tarball(store, f, ['CMD ["/bin/sh"]'], "busybox", timestamp=MTIME)
        ref = f"{registry_plain.host}/regcache/busybox:1"
        push(ctx, rec.id, ref, options=RegistryOptions(tls_verify=False))
    finally:
        ctx.close()
    return ref


@pytest.fixture
def project(tmp_path, base_ref):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text("b\n")
    (ctx / "Containerfile").write_text(DOCKERFILE.format(base=base_ref))
    witness = tmp_path / "witness"
    witness.mkdir()
    (witness / "log").write_text("")
    return ctx, witness


def _log(witness: Path) -> list[str]:
    return (witness / "log").read_text().split()


def _manifest(registry, repo_tag: str) -> tuple[dict, str]:
    from kiln.oci import Reference
    from kiln.registry import RegistryClient, RegistryOptions

    with RegistryClient(RegistryOptions(tls_verify=False, retries=1)) as client:
        raw, _, digest = client.get_manifest(Reference.parse(f"{registry.host}/{repo_tag}"))
    return json.loads(raw), str(digest)


def test_max_cache_makes_an_empty_store_build_nothing(registry_plain, project, fleet):
    ctx, witness = project
    ref = f"{registry_plain.host}/regcache/cache:max"
    a = fleet("a")
    built = a.build(str(ctx), witness, tags=["app"], cache_to=[f"type=registry,ref={ref},mode=max"])
    assert _log(witness) == ["tool-stage", "a-step", "b-step"]
    artifact, _ = _manifest(registry_plain, "regcache/cache:max")
    assert artifact["config"]["mediaType"] == "application/vnd.kiln.buildcache.config.v1+json"

    # machine B has its own checkout: another path, files written anew (other inodes,
    # mtimes and ctimes): nothing of the machine is in a key, so every key matches
    other = ctx.parent / "checkout-b"
    other.mkdir()
    for name in ("a.txt", "b.txt", "Containerfile"):
        (other / name).write_bytes((ctx / name).read_bytes())
        os.utime(other / name, (1_000_000, 1_000_000))
    b = fleet("b")
    assert b.store.list_images() == []
    again = b.build(str(other), witness, tags=["app"], cache_from=[ref])
    assert _log(witness) == ["tool-stage", "a-step", "b-step"], "a RUN executed on store B"
    assert again.image_id == built.image_id
    assert again.manifest_digest == built.manifest_digest
    # every step of both stages (LABEL's image is the last one) came from the cache
    assert again.cache_hits == 7
    assert b.warnings() == []

    # one changed file: B rebuilds from that step on, and only that
    (other / "b.txt").write_text("changed\n")
    b.build(str(other), witness, cache_from=[ref])
    assert _log(witness) == ["tool-stage", "a-step", "b-step", "b-step"]
    assert b.hit_steps() == [
        "RUN echo tool-stage >> /witness/log && echo tool > /tool",
        "COPY a.txt /a.txt",
        "RUN echo a-step >> /witness/log && cat /a.txt > /copy-of-a",
    ]


def test_min_cache_holds_only_the_final_stage(registry_plain, project, fleet):
    ctx, witness = project
    ref = f"{registry_plain.host}/regcache/cache:min"
    # reproducible (--timestamp): the tool stage rebuilt on C is the image A built, so
    # the final stage's COPY --from key, which names that image, matches too
    a = fleet("a")
    built = a.build(str(ctx), witness, cache_to=[f"type=registry,ref={ref}"], timestamp=0)
    c = fleet("c")
    again = c.build(str(ctx), witness, cache_from=[f"type=registry,ref={ref}"], timestamp=0)
    assert _log(witness) == ["tool-stage", "a-step", "b-step", "tool-stage"]
    assert again.image_id == built.image_id
    assert "COPY --from=tool /tool /tool" in c.hit_steps()


def test_a_multi_platform_build_exports_one_cache_for_every_platform(
    registry_plain,
    busybox_rootfs_tar,  # noqa: F811
    tmp_path,
    fleet,
):
    """``--platform linux/amd64,linux/arm64 --cache-to ...`` writes one cache holding
    both platforms' steps (each platform exported its own to the same ref, so the cache
    held whichever finished last and the other platform missed on every builder)."""
    from kiln.image import import_tarball
    from kiln.oci import Platform
    from kiln.ops import manifests

    seed = fleet("seed")
    ids = []
    for platform in ("linux/amd64", "linux/arm64"):
        with open(busybox_rootfs_tar, "rb") as f:
            rec = import_tarball(seed.store, f, timestamp=MTIME, platform=Platform.parse(platform))
        ids.append(rec.id)
    manifests.create(seed.ctx, "base", ids)
    base = f"{registry_plain.host}/regcache/two-platforms:1"
    manifests.push(seed.ctx, "base", f"docker://{base}", options=RegistryOptions(tls_verify=False))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Containerfile").write_text(
        f"FROM {base}\nARG TARGETARCH\nCOPY a.txt /a-$TARGETARCH\nLABEL done=yes\n"
    )  # no RUN: no emulator needed for the foreign platform
    ref = f"{registry_plain.host}/regcache/cache:two-platforms"
    both = ["linux/amd64", "linux/arm64"]
    built = fleet("a").build(
        str(ctx), tmp_path, platforms=both, cache_to=[f"type=registry,ref={ref},mode=max"]
    )
    b = fleet("b")
    again = b.build(str(ctx), tmp_path, platforms=both, cache_from=[ref])
    assert again.platform_images == built.platform_images
    assert again.cache_hits == 4  # COPY and LABEL, for each platform
    assert b.warnings() == []


def test_local_cache_directory(tmp_path, project, fleet):
    from kiln.store.oci_layout import OCILayout

    ctx, witness = project
    dest = tmp_path / "cache-dir"
    a = fleet("a")
    built = a.build(str(ctx), witness, cache_to=[f"type=local,dest={dest},mode=max"])
    assert OCILayout(str(dest)).resolve("latest").media_type.endswith("manifest.v1+json")
    d = fleet("d")
    again = d.build(str(ctx), witness, cache_from=[f"type=local,src={dest}"])
    assert _log(witness) == ["tool-stage", "a-step", "b-step"]
    assert again.manifest_digest == built.manifest_digest


def test_corrupt_local_cache_is_a_warning(tmp_path, project, fleet):
    ctx, witness = project
    dest = tmp_path / "cache-dir"
    fleet("a").build(str(ctx), witness, cache_to=[f"type=local,dest={dest},mode=max"])
    # flip bytes of every layer blob (never the small manifest/mapping): hits must fail
    for blob in (dest / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        if data[:2] == b"\x1f\x8b":
            blob.write_bytes(data[:-8] + bytes(8))
    e = fleet("e")
    result = e.build(str(ctx), witness, cache_from=[f"type=local,src={dest}"])
    assert result.image_id
    assert any("not using this cache" in w for w in e.warnings()), e.warnings()
    assert _log(witness).count("b-step") == 2  # rebuilt


def _forge_last_diff_id(dest: Path, label: str) -> None:
    """A fleet member with write access rewrites the cache in ``dest``: the step whose
    image has ``label`` now maps to an image whose config claims another diff_id for its
    top layer (a layer every importer already holds from the step before)."""
    from kiln.image.build_cache import export_cache, open_cache, read_layout_manifest
    from kiln.image.model import SourceImage
    from kiln.oci import media_types as mt
    from kiln.oci.descriptor import Descriptor
    from kiln.oci.digest import Digest
    from kiln.oci.manifest import Manifest
    from kiln.store.oci_layout import OCILayout

    layout = OCILayout(str(dest))
    cache = open_cache(layout, *read_layout_manifest(layout, "latest"), "cache")
    entries = []
    for key, manifest in cache.entries.items():
        img = SourceImage(layout, manifest)
        if label in (img.config.config.labels or {}):
            config = json.loads(img.config.raw)
            config["rootfs"]["diff_ids"][-1] = "sha256:" + "ab" * 32
            raw = json.dumps(config).encode()
            desc = Descriptor(mt.OCI_CONFIG, Digest.of_bytes(raw), len(raw))
            layout.put_blob(desc, io.BytesIO(raw))
            img = SourceImage(layout, Manifest.build(mt.OCI_MANIFEST, desc, img.layers))
        entries.append((key, img))
    export_cache(layout, entries, names=["latest"])


def test_a_poisoned_entry_is_refused_not_built_on(tmp_path, project, fleet):
    """An entry whose config lies about a layer the importer already holds (so no byte of
    it is fetched) is refused like a corrupt blob: the step is built here, and the image is
    the honest one, not one whose layer does not match its config."""
    from kiln.image import open_store_image, validate_image

    ctx, witness = project
    dest = tmp_path / "cache-dir"
    built = fleet("a").build(
        str(ctx), witness, cache_to=[f"type=local,dest={dest},mode=max"], timestamp=0
    )
    _forge_last_diff_id(dest, "done")
    h = fleet("h")
    result = h.build(str(ctx), witness, cache_from=[f"type=local,src={dest}"], timestamp=0)
    assert any("not using this cache" in w and "image config says" in w for w in h.warnings())
    assert "LABEL done=yes" not in h.hit_steps()
    validate_image(open_store_image(h.store, result.image_id))
    assert result.image_id == built.image_id


def test_inline_cache_travels_with_the_pushed_image(registry_plain, project, fleet):
    ctx, witness = project
    name = f"{registry_plain.host}/regcache/app:inline"
    a = fleet("a")
    built = a.build(str(ctx), witness, tags=[name], push=True, cache_to=["type=inline"])
    manifest, _ = _manifest(registry_plain, "regcache/app:inline")
    assert "dev.kiln.buildcache.v1" in manifest.get("annotations", {})
    assert manifest["config"]["digest"] == built.image_id  # the image is unchanged
    f = fleet("f")
    f.build(str(ctx), witness, cache_from=[name], timestamp=None)
    # the final stage's steps came from the pushed image; the tool stage was rebuilt
    assert _log(witness) == ["tool-stage", "a-step", "b-step", "tool-stage"]
    assert "RUN echo b-step >> /witness/log && cat /b.txt > /copy-of-b" in f.hit_steps()


def test_buildkit_inline_cache_build_arg_exports_an_inline_cache(registry_plain, project, fleet):
    """``--build-arg BUILDKIT_INLINE_CACHE=1``, as CI scripts written for dockerd and
    BuildKit pass it, is ``--cache-to type=inline`` (not an unused build-arg)."""
    ctx, witness = project
    name = f"{registry_plain.host}/regcache/app:inline-arg"
    a = fleet("a")
    a.build(str(ctx), witness, tags=[name], push=True, build_args={"BUILDKIT_INLINE_CACHE": "1"})
    assert not [w for w in a.warnings() if "BUILDKIT_INLINE_CACHE" in w], a.warnings()
    manifest, _ = _manifest(registry_plain, "regcache/app:inline-arg")
    assert "dev.kiln.buildcache.v1" in manifest.get("annotations", {})
    f = fleet("f")
    f.build(str(ctx), witness, cache_from=[name])
    assert "RUN echo b-step >> /witness/log && cat /b.txt > /copy-of-b" in f.hit_steps()


def test_an_inline_cache_with_nothing_pushed_is_one_warning(project, fleet):
    """A docker-format build with BUILDKIT_INLINE_CACHE=1 and no push (as a Docker API
    client's build): one warning that no cache goes anywhere, not a second one about the
    format of a push that does not happen."""
    ctx, witness = project
    a = fleet("a")
    a.build(str(ctx), witness, image_format="docker", build_args={"BUILDKIT_INLINE_CACHE": "1"})
    assert len(a.warnings()) == 1, a.warnings()
    assert "nothing is pushed" in a.warnings()[0]


def test_push_and_registry_output_push_the_image_as_stored(registry_plain, project, fleet):
    ctx, witness = project
    a = fleet("a")
    pushed = f"{registry_plain.host}/regcache/app:pushed"
    out = f"{registry_plain.host}/regcache/app:output"
    built = a.build(
        str(ctx), witness, tags=[pushed], push=True, outputs=[f"type=registry,name={out}"]
    )
    for tag in ("regcache/app:pushed", "regcache/app:output"):
        _, digest = _manifest(registry_plain, tag)
        assert digest == built.manifest_digest
    assert a.store.resolve_image(out).id == built.image_id


def test_unreachable_missing_unauthorised_or_foreign_cache_is_a_warning(
    registry_plain, registry_basic, project, fleet
):
    ctx, witness = project
    g = fleet("g")
    result = g.build(
        str(ctx),
        witness,
        # the unreachable source is retried: short waits instead of the default 2 + 4 s
        registry=RegistryOptions(tls_verify=False, retry_delay=0.05),
        cache_from=[
            "type=registry,ref=127.0.0.1:9/nothing/here:x",  # nothing listens (discard port)
            f"{registry_plain.host}/regcache/never-pushed:latest",
            f"{registry_basic.host}/regcache/cache:max",  # needs credentials: none given
            "type=registry,ref=" + f"{registry_plain.host}/regcache/busybox:1",  # an image
        ],
    )
    assert result.image_id
    warnings = g.warnings()
    assert len(warnings) == 4, warnings
    assert all("not using this cache" in w for w in warnings)
    assert "manifest unknown" in warnings[1]
    assert "unauthorized" in warnings[2]
    assert "not a kiln build cache" in warnings[3]
    assert _log(witness).count("b-step") == 1  # built, without any cache


def test_cli_flags(registry_plain, project, tmp_path, capsys):
    from kiln.cli.main import run

    ctx, witness = project
    ref = f"{registry_plain.host}/regcache/cache:cli"
    common = ["build", "--tls-verify=false", "-v", f"{witness}:/witness", str(ctx)]
    assert (
        run(
            [
                "--root",
                str(tmp_path / "cli-a"),
                *common,
                f"--cache-to=type=registry,ref={ref},mode=max",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert run(["--root", str(tmp_path / "cli-b"), *common, "--cache-from", ref]) == 0
    out = capsys.readouterr().out
    assert out.count("--> Using cache") == 7
    assert _log(witness) == ["tool-stage", "a-step", "b-step"]
    code = run(["--root", str(tmp_path / "cli-c"), *common, "--cache-to", "type=gha"])
    assert code == 125
    assert "type must be one of registry, local, inline" in capsys.readouterr().err


def test_docker_api_cachefrom_uses_the_same_cache(registry_plain, project, fleet, tmp_path):
    """docker-py's ``cache_from`` against ``kiln serve`` with an empty store: every step
    comes from the registry cache. No RUN can have executed: the API build has no
    /witness mount, so each RUN would fail."""
    docker = pytest.importorskip("docker")
    from api_server import start_server, stop_server

    conf = Path(os.environ["KILN_REGISTRIES_CONF"])  # the server reaches the plain-HTTP
    conf.write_text(  # registry as an insecure one, as a server would be configured
        conf.read_text() + f'\n[[registry]]\nlocation = "{registry_plain.host}"\ninsecure = true\n'
    )
    ctx, witness = project
    ref = f"{registry_plain.host}/regcache/cache:api"
    a = fleet("a")  # the Docker API builds Docker-format images: the same settings here
    built = a.build(
        str(ctx), witness, image_format="docker", cache_to=[f"type=registry,ref={ref},mode=max"]
    )
    (tmp_path / "server").mkdir()
    proc, sock = start_server(tmp_path / "server")
    try:
        client = docker.APIClient(base_url=f"unix://{sock}", version="auto", timeout=300)
        lines = list(
            client.build(path=str(ctx), dockerfile="Containerfile", cache_from=[ref], decode=True)
        )
        client.close()
    finally:
        assert stop_server(proc) == 0
    assert not [x for x in lines if "error" in x], lines
    text = "".join(x.get("stream", "") for x in lines)
    assert text.count("--> Using cache") == 7, text
    assert {"aux": {"ID": built.image_id}} in lines


def test_caches_that_never_answer_are_waited_for_together(tmp_path, fleet):
    """Several --cache-from registries that accept and never answer are opened at once:
    each of them holds a connection while the others do (one after another, the second
    would be asked only when the first gave up, 60 s later), and their warnings come in
    the order given."""
    import selectors
    import socket
    import threading
    import time

    silent = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in silent]
    held: dict[int, list[socket.socket]] = {i: [] for i in range(3)}

    def hold() -> None:  # accept and never answer, until every one holds a connection
        deadline = time.monotonic() + 60
        with selectors.DefaultSelector() as sel:
            for i, s in enumerate(silent):
                sel.register(s, selectors.EVENT_READ, i)
            while not all(held.values()) and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    held[key.data].append(key.fileobj.accept()[0])
        for s in silent:
            s.close()  # then refused: the retries end at once
        for conn in (c for conns in held.values() for c in conns):
            conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nLABEL silent=1\n")
    m = fleet("s")
    try:
        result = m.build(
            str(ctx), tmp_path,
            registry=RegistryOptions(tls_verify=False, timeout=60, retry_delay=0.05),
            cache_from=[f"{host}/cache:c" for host in hosts],
        )  # fmt: skip
    finally:
        holder.join(timeout=120)
    assert all(held.values()), held  # the three were waiting together
    assert result.image_id
    warnings = m.warnings()
    assert [w.split("/", 1)[0] for w in warnings] == [f"--cache-from {h}" for h in hosts]
    assert all("not using this cache" in w for w in warnings), warnings
