"""Store metadata: images, names, resolution, layers, containers, caches, schema."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator

import pytest

from kiln.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unavailable
from kiln.store import ContainerRecord, ImageRecord, LayerRecord, Store
from kiln.store.paths import default_root
from kiln.store.schema import MIGRATIONS


def h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def add_layers(store: Store, *names: str) -> list[str]:
    chain, parent = [], None
    for n in names:
        cid = "sha256:" + h("chain" + n)
        store.put_layer(
            LayerRecord(
                cid,
                "sha256:" + h("diff" + n),
                parent,
                "sha256:" + h("blob" + n),
                "application/vnd.oci.image.layer.v1.tar+gzip",
                10,
                20,
            )
        )
        chain.append(cid)
        parent = cid
    return chain


def image(
    store: Store, seed: str, layers: list[str] | None = None, hexid: str | None = None
) -> str:
    image_id = "sha256:" + (hexid or h("config" + seed))
    store.put_image(
        ImageRecord(
            id=image_id,
            manifest_digest="sha256:" + h("manifest" + seed),
            manifest_media_type="application/vnd.oci.image.manifest.v1+json",
            config_digest=image_id,
            created="2024-01-01T00:00:00Z",
            size=20 * len(layers or []),
            layers=layers or [],
            platform="linux/amd64",
        )
    )
    return image_id


def test_default_root(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("KILN_ROOT", str(tmp_path / "k"))
    assert default_root() == str(tmp_path / "k")
    monkeypatch.delenv("KILN_ROOT")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_root() == "/var/lib/kiln"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_root() == str(tmp_path / "xdg" / "kiln")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == str(tmp_path / "home" / ".local" / "share" / "kiln")


def test_layout_and_pragmas(store: Store) -> None:
    for sub in ("blobs/sha256", "ingest", "snapshots"):
        assert os.path.isdir(os.path.join(store.root, sub))
    conn = sqlite3.connect(os.path.join(store.root, "kiln.db"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.one("PRAGMA foreign_keys")[0] == 1


def test_temporary_data_stays_in_memory(store: Store) -> None:
    # 2 = MEMORY: an image's multi-row layer insert keeps its statement journal in memory
    # instead of a file created and unlinked in /var/tmp for every build step
    assert store.db.one("PRAGMA temp_store")[0] == 2


def test_put_get_list_image(store: Store) -> None:
    layers = add_layers(store, "a", "b")
    iid = image(store, "one", layers)
    rec = store.get_image(iid)
    assert rec.layers == layers
    assert rec.platform == "linux/amd64"
    assert rec.added > 0
    assert [r.id for r in store.list_images()] == [iid]
    with pytest.raises(NotFound, match="image not known"):
        store.get_image("sha256:" + h("missing"))


def test_list_without_blobs_walks_each_chain_from_its_top(store: Store) -> None:
    # what a listing reads: every image's chain IDs, bottom first, as the full list has them
    # (shared bases, a chain another image extends, no layers at all), without blobs
    base = add_layers(store, "a", "b")
    longer = base + add_layers_on(store, base[-1], "c")
    images = [image(store, "x", base), image(store, "y", longer), image(store, "z", [])]
    image(store, "w", base[:1])
    full = store.list_images()
    lean = store.list_images(blobs=False)
    assert [r.layers for r in lean] == [r.layers for r in full]
    assert [r.layers for r in lean if r.id in images] == [base, longer, []]
    assert all(r.layer_blobs == [] for r in lean)
    for a, b in zip(full, lean, strict=True):
        b.layer_blobs = a.layer_blobs
        assert a == b


def test_list_without_blobs_reads_layer_rows_where_a_chain_does_not_add_up(
    store: Store,
) -> None:
    chain = add_layers(store, "a", "b")
    iid = image(store, "x", chain)
    # an image whose top chain's parents do not give its recorded layer count (a damaged
    # store): the listing still shows the layers the image's own rows name
    store.db.execute("UPDATE images SET top_chain=? WHERE id=?", (chain[0], iid))
    assert [r.layers for r in store.list_images(blobs=False)] == [chain]


def add_layers_on(store: Store, parent: str, *names: str) -> list[str]:
    chain = []
    for n in names:
        cid = "sha256:" + h("chain" + parent + n)
        store.put_layer(
            LayerRecord(cid, "sha256:" + h("diff" + n), parent, "sha256:" + h("blob" + n),
                        "application/vnd.oci.image.layer.v1.tar+gzip", 10, 20)
        )  # fmt: skip
        chain.append(cid)
        parent = cid
    return chain


def test_put_image_needs_its_layers(store: Store) -> None:
    with pytest.raises(NotFound, match="put_layer"):
        image(store, "x", ["sha256:" + h("nolayer")])


def test_tag_moves_name_and_leaves_dangling(store: Store) -> None:
    a, b = image(store, "a"), image(store, "b")
    assert store.tag("busybox", a) is None
    assert store.names_of(a) == ["docker.io/library/busybox:latest"]
    assert store.tag("docker.io/library/busybox:latest", b) == a
    assert store.names_of(a) == []
    assert store.names_of(b) == ["docker.io/library/busybox:latest"]
    ids = {r.id: r for r in store.list_images()}
    assert ids[a].names == [] and a in ids  # dangling, still stored
    assert store.tag("busybox", b) is None  # already there
    assert store.untag("busybox:latest") == b
    with pytest.raises(NotFound):
        store.untag("busybox")


def test_tag_refuses_digest_and_unknown_image(store: Store) -> None:
    a = image(store, "a")
    with pytest.raises(InvalidArgument):
        store.tag("busybox@sha256:" + h("m"), a)
    with pytest.raises(NotFound):
        store.tag("x", "sha256:" + h("nothing"))


def test_resolve_every_accepted_form(store: Store) -> None:
    a = image(store, "a")
    store.tag("busybox", a)
    store.tag("quay.io/org/tool:1.0", a)
    store.add_repo_digest(a, "busybox@sha256:" + h("repo"))
    b = image(store, "b")
    store.tag("localhost/mybuilt:latest", b)
    hexa = a.split(":")[1]
    forms = [
        "busybox",
        "busybox:latest",
        "docker.io/busybox",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        "quay.io/org/tool:1.0",
        a,
        hexa,
        hexa[:3],
        hexa[:12],
        "sha256:" + hexa[:12],
        "busybox@sha256:" + h("repo"),
        "docker.io/library/busybox@sha256:" + h("repo"),
        "quay.io/org/tool@sha256:" + h("manifesta"),  # manifest digest
        "anything/else@sha256:" + h("manifesta"),
    ]
    for form in forms:
        assert store.resolve_image(form).id == a, form
    assert store.resolve_image("mybuilt").id == b
    assert store.resolve_image("mybuilt:latest").id == b
    rec = store.resolve_image("busybox")
    assert "docker.io/library/busybox:latest" in rec.names
    assert rec.repo_digests == ["docker.io/library/busybox@sha256:" + h("repo")]


def test_a_recorded_repo_digest_is_forgotten_alone(store: Store) -> None:
    a = image(store, "a")
    store.tag("busybox", a)
    store.add_repo_digest(a, "busybox@sha256:" + h("repo"))
    store.add_repo_digest(a, "quay.io/x@sha256:" + h("repo"))
    assert store.remove_repo_digest("busybox@sha256:" + h("repo"))
    assert not store.remove_repo_digest("busybox@sha256:" + h("repo"))  # already gone
    rec = store.resolve_image("busybox")
    assert rec.repo_digests == ["quay.io/x@sha256:" + h("repo")]
    assert rec.names == ["docker.io/library/busybox:latest"]


def test_resolve_unknown_uses_podman_wording(store: Store) -> None:
    with pytest.raises(NotFound) as info:
        store.resolve_image("nosuch")
    assert str(info.value) == "nosuch: image not known"
    with pytest.raises(NotFound):
        store.resolve_image("busybox@sha256:" + h("unknown"))
    with pytest.raises(NotFound):
        store.resolve_image("abcdef")


def test_resolve_ambiguous_prefix(store: Store) -> None:
    image(store, "p1", hexid="abc1" + "0" * 60)
    image(store, "p2", hexid="abc2" + "0" * 60)
    with pytest.raises(InvalidArgument) as info:
        store.resolve_image("abc")
    assert "2 images" in str(info.value)
    assert store.resolve_image("abc1").id == "sha256:abc1" + "0" * 60
    with pytest.raises(NotFound):
        store.resolve_image("ab")  # shorter than 3 is a name, not a prefix


def test_name_wins_over_id_prefix(store: Store) -> None:
    a = image(store, "a", hexid="abc" + "1" * 61)
    b = image(store, "b")
    store.tag("abc", b)
    assert store.resolve_image("abc").id == b
    assert store.resolve_image("sha256:abc").id == a


def test_delete_image(store: Store) -> None:
    a = image(store, "a")
    store.tag("x", a)
    store.put_cache("k", a)
    store.delete_image(a)
    with pytest.raises(NotFound):
        store.resolve_image("x")
    assert store.get_cache("k") is None
    with pytest.raises(NotFound):
        store.delete_image(a)


def test_images_using_layer(store: Store) -> None:
    base = add_layers(store, "1", "2")
    more = add_layers(store, "1", "2", "3")
    other = add_layers(store, "9")
    p = image(store, "parent", base)
    c = image(store, "child", more)
    image(store, "other", other)
    same = image(store, "same", base)
    assert store.images_using_layer(base[0]) == sorted([p, c, same])


def test_layers_roundtrip(store: Store) -> None:
    (cid,) = add_layers(store, "z")
    rec = store.get_layer(cid)
    assert rec.parent is None and rec.size == 10 and rec.uncompressed_size == 20
    with pytest.raises(NotFound):
        store.get_layer("sha256:" + h("none"))


def container(cid: str, name: str, image_id: str | None) -> ContainerRecord:
    return ContainerRecord(id=cid, name=name, image_id=image_id, state={"k": [1, 2]}, created=1.0)


def test_containers(store: Store) -> None:
    a = image(store, "a")
    c1, c2 = h("c1"), h("c2")
    store.put_container(container(c1, "work1", a))
    store.put_container(container(c2, "work2", None))
    assert store.get_container(c1).state == {"k": [1, 2]}
    assert store.find_container("work2").id == c2
    assert store.find_container(c1[:5]).id == c1
    assert store.find_container(c1).name == "work1"
    assert [c.id for c in store.containers_using(a)] == [c1]
    with pytest.raises(AlreadyExists, match="already in use"):
        store.put_container(container(h("c3"), "work1", a))
    with pytest.raises(Conflict):
        store.delete_image(a)
    store.delete_container(c1)
    store.delete_image(a)
    with pytest.raises(NotFound, match="no such container"):
        store.find_container("work1")
    assert [c.id for c in store.list_containers()] == [c2]


def test_ambiguous_container_prefix(store: Store) -> None:
    store.put_container(container("ab" + "0" * 62, "x", None))
    store.put_container(container("ab" + "1" * 62, "y", None))
    with pytest.raises(InvalidArgument, match="2 containers"):
        store.find_container("ab")


def test_build_cache(store: Store) -> None:
    a = image(store, "a")
    assert store.get_cache("step") is None
    store.put_cache("step", a)
    assert store.get_cache("step") == a


def test_checksum_cache_is_stat_keyed(store: Store, tmp_path) -> None:
    f = tmp_path / "ctx" / "file"
    f.parent.mkdir()
    f.write_text("one")
    st = os.stat(f)
    assert store.get_checksum(str(f), st) is None
    store.put_checksum(str(f), st, "sha256:" + h("one"))
    assert store.get_checksum(str(f), os.stat(f)) == "sha256:" + h("one")
    f.write_text("two!")
    assert store.get_checksum(str(f), os.stat(f)) is None


def test_transactions_nest_and_roll_back(store: Store) -> None:
    a = image(store, "a")
    with pytest.raises(RuntimeError), store.transaction():
        store.tag("one", a)
        with store.transaction():
            store.tag("two", a)
        raise RuntimeError("boom")
    assert store.names_of(a) == []
    with store.transaction():
        store.tag("one", a)
        store.tag("two", a)
    assert len(store.names_of(a)) == 2


def test_threads_share_one_store(store: Store) -> None:
    a = image(store, "a")
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(20):
                store.tag(f"t{i}:v{j}", a)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.names_of(a)) == 120


def test_newer_schema_is_refused(tmp_path) -> None:
    root = str(tmp_path / "r")
    Store.open(root).close()
    conn = sqlite3.connect(os.path.join(root, "kiln.db"))
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(Unavailable, match="newer kiln"):
        Store.open(root)


def test_migrations_are_idempotent(tmp_path) -> None:
    root = str(tmp_path / "r")
    s = Store.open(root)
    a = image(s, "a")
    s.tag("keep", a)
    s.close()
    for _ in range(2):
        s = Store.open(root)
        assert s.schema_version == len(MIGRATIONS)
        assert s.resolve_image("keep").id == a
        s.close()
