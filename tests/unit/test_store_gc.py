"""Store GC (mark from images, containers, leases, build cache; grace period) and fsck."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from kiln.errors import NotFound
from kiln.oci import Descriptor, Digest
from kiln.store import ContainerRecord, ImageRecord, LayerRecord, Store
from kiln.store.ingest import remove_dead_writers


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "root"))
    s.blob_grace_seconds = 0
    yield s
    s.close()


def make_old(store: Store, digest: Digest, age: float = 3600) -> None:
    t = time.time() - age
    os.utime(store.blob_path(digest), (t, t))


def stored_image(store: Store, seed: str) -> tuple[str, list[Digest]]:
    layer = store.put_bytes(f"layer {seed}".encode())
    config = store.put_bytes(f'{{"seed": "{seed}"}}'.encode())
    manifest = store.put_bytes(f"manifest {seed}".encode())
    chain = f"sha256:{Digest.of_bytes(seed.encode()).hex}"
    store.put_layer(LayerRecord(chain, chain, None, str(layer), "t", 1, 1))
    store.put_image(ImageRecord(str(config), str(manifest), "m", str(config), "", 1, [chain]))
    return str(config), [layer, config, manifest]


def test_unreferenced_blobs_are_swept(store: Store) -> None:
    junk = store.put_bytes(b"junk" * 1000)
    image_id, blobs = stored_image(store, "a")
    result = store.gc()
    assert result.blobs_removed == 1
    assert result.bytes_freed == 4000
    assert not store.has_blob(junk)
    assert all(store.has_blob(b) for b in blobs)


def test_dry_run_removes_nothing(store: Store) -> None:
    junk = store.put_bytes(b"junk")
    assert store.gc(dry_run=True).blobs_removed == 1
    assert store.has_blob(junk)


def test_dangling_images_are_kept_until_deleted(store: Store) -> None:
    old, blobs = stored_image(store, "old")
    new, _ = stored_image(store, "new")
    store.tag("app", old)
    store.tag("app", new)  # old is now dangling
    assert store.gc().blobs_removed == 0
    assert all(store.has_blob(b) for b in blobs)
    store.delete_image(old)
    assert store.gc().blobs_removed == 3
    assert not any(store.has_blob(b) for b in blobs)
    with pytest.raises(NotFound, match="not known to the store"):  # went with its blob
        store.get_layer(f"sha256:{Digest.of_bytes(b'old').hex}")


def test_young_blobs_are_kept(store: Store) -> None:
    store.blob_grace_seconds = 600
    young = store.put_bytes(b"young")
    old = store.put_bytes(b"old")
    make_old(store, old)
    assert store.gc().blobs_removed == 1
    assert store.has_blob(young) and not store.has_blob(old)


def test_reput_restarts_the_grace_period(store: Store) -> None:
    store.blob_grace_seconds = 600
    d = store.put_bytes(b"reused")
    make_old(store, d)
    store.put_bytes(b"reused")
    assert store.gc().blobs_removed == 0
    assert store.has_blob(d)


def test_leased_blobs_are_kept_and_released_after(store: Store) -> None:
    with store.lease() as lease:
        inside = store.put_bytes(b"written under the lease")
        by_hand = store.put_bytes(b"added by hand")
        lease.add_blob(by_hand)
        with store.ingest("r") as ing:
            ing.write(b"ingested under the lease")
            ingested = ing.commit()
        for d in (inside, by_hand, ingested):
            make_old(store, d)
        assert store.gc().blobs_removed == 0
    assert store.gc().blobs_removed == 3


def test_expired_lease_protects_nothing(store: Store) -> None:
    with store.lease(ttl=-1):
        d = store.put_bytes(b"x")
        make_old(store, d)
        assert store.gc().blobs_removed == 1


def test_leased_image_keeps_blobs_after_delete(store: Store) -> None:
    image_id, blobs = stored_image(store, "a")
    with store.lease() as lease:
        lease.add_image(image_id)
        store.delete_image(image_id)
        assert store.gc().blobs_removed == 0
    assert store.gc().blobs_removed == 3


def test_container_image_is_kept(store: Store) -> None:
    image_id, blobs = stored_image(store, "c")
    store.put_container(ContainerRecord("f" * 64, "w", image_id, {}, 0.0))
    assert store.gc().blobs_removed == 0
    assert all(store.has_blob(b) for b in blobs)


def test_stale_ingests_are_removed(store: Store) -> None:
    ingest = os.path.join(store.root, "ingest")
    with store.ingest("fresh") as ing:
        ing.write(b"partial")
    with store.ingest("stale") as ing:
        ing.write(b"partial")
    stale = [d for d in os.listdir(ingest)]
    assert len(stale) == 2
    os.makedirs(os.path.join(ingest, "tmp-crashed"))
    with open(os.path.join(ingest, "tmp-crashed", "data"), "wb") as f:
        f.write(b"left by a killed process")
    # age the "stale" one past a day
    with store.ingest("stale") as ing:
        path = os.path.join(ing.dir, "data")
    t = time.time() - 2 * 86400
    os.utime(path, (t, t))
    with store.ingest("busy") as busy:
        busy.write(b"in progress")
        store.gc()
        remaining = sorted(os.listdir(ingest))
        assert "tmp-crashed" not in remaining
        assert os.path.basename(busy.dir) in remaining
    assert len(remaining) == 2  # "fresh" and "busy"
    with store.ingest("fresh") as ing:
        assert ing.offset == len(b"partial")
    with store.ingest("stale") as ing:
        assert ing.offset == 0


def test_a_dead_writers_ingest_directory_goes_with_the_sweep(store: Store, monkeypatch) -> None:
    """Where O_TMPFILE is not available an anonymous ingest is a directory naming its
    writer: the start-of-command sweep removes a dead writer's, never a live one's."""
    monkeypatch.delattr(os, "O_TMPFILE")
    ingest = os.path.join(store.root, "ingest")
    done = subprocess.run([sys.executable, "-c", "from kiln.util.process_owner import "
                           "this_process; print(this_process())"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    dead = os.path.join(ingest, f"tmp-{done.stdout.strip()}-{'0' * 32}")  # a reaped process
    os.makedirs(dead)
    with open(os.path.join(dead, "data"), "wb") as f:
        f.write(b"left by a killed process")
    os.makedirs(os.path.join(ingest, "tmp-no-owner"))  # named by no process: GC's
    with store.ingest("") as live:
        live.write(b"in progress")
        assert remove_dead_writers(store.root) == 1
        assert sorted(os.listdir(ingest)) == sorted([os.path.basename(live.dir), "tmp-no-owner"])
        live.write(b" and on")
        digest = live.commit()
    assert store.blob_bytes(digest, 100) == b"in progress and on"


def test_fsck_finds_corruption_and_missing_blobs(store: Store) -> None:
    image_id, (layer, config, manifest) = stored_image(store, "f")
    assert store.fsck() == []
    with open(store.blob_path(layer), "wb") as f:
        f.write(b"tampered")
    os.unlink(store.blob_path(manifest))
    problems = store.fsck()
    assert any(str(layer) in p and "corrupt" in p for p in problems)
    assert any(str(manifest) in p and "missing" in p for p in problems)
    assert len(problems) == 2


def test_gc_keeps_blob_being_put_concurrently(store: Store) -> None:
    """A blob published under a lease while GC runs is never swept."""
    import threading

    stop = threading.Event()
    errors: list[str] = []

    def collector() -> None:
        while not stop.is_set():
            store.gc()

    t = threading.Thread(target=collector)
    t.start()
    try:
        for i in range(40):
            with store.lease():
                d = Digest.of_bytes(f"blob {i}".encode())
                store.put_blob(
                    Descriptor("x", d, len(f"blob {i}")), io.BytesIO(f"blob {i}".encode())
                )
                if not store.has_blob(d):
                    errors.append(str(d))
    finally:
        stop.set()
        t.join()
    assert errors == []


# reusing a blob found present: check and lease in one step -----------------------------


def test_lease_existing_blob_keeps_an_old_unreferenced_blob_from_gc(store: Store) -> None:
    """The window a pull had between ``has_blob`` and ``lease.add_blob``: a GC there
    swept the blob it was about to reuse. ``lease_existing_blob`` closes it."""
    checked = store.put_bytes(b"checked only")
    leased = store.put_bytes(b"leased when checked")
    make_old(store, checked)
    make_old(store, leased)
    with store.lease():
        assert store.has_blob(checked)
        assert store.lease_existing_blob(leased)
        store.gc()  # a GC right after the check
        assert not store.has_blob(checked)  # what has_blob alone left exposed
        assert store.has_blob(leased)
    store.gc()
    assert not store.has_blob(leased)  # the lease held it, nothing else


def test_lease_existing_blob_joins_a_lease_from_another_thread(store: Store) -> None:
    """Pull workers check blobs on pool threads that have not joined the pull's lease."""
    import threading

    d = store.put_bytes(b"checked on a worker thread")
    make_old(store, d)
    found: list[bool] = []
    with store.lease() as lease:
        t = threading.Thread(target=lambda: found.append(store.lease_existing_blob(d, lease)))
        t.start()
        t.join()
        assert found == [True]
        store.gc()
        assert store.has_blob(d)


def test_lease_existing_blob_of_an_absent_blob_holds_nothing(store: Store) -> None:
    d = Digest.of_bytes(b"never stored")
    with store.lease() as lease:
        assert store.lease_existing_blob(d, lease) is False
        rows = store.db.query("SELECT ref FROM lease_resources WHERE lease_id=?", (lease.id,))
        assert list(rows) == []
    assert not store.has_blob(d)


def test_lease_existing_blob_without_a_lease_restarts_the_grace_period(store: Store) -> None:
    store.blob_grace_seconds = 600
    kept, swept = store.put_bytes(b"reused"), store.put_bytes(b"not reused")
    make_old(store, kept)
    make_old(store, swept)
    assert store.lease_existing_blob(kept)
    assert store.gc().blobs_removed == 1
    assert store.has_blob(kept) and not store.has_blob(swept)


# undoing a failed operation: delete only what nothing else keeps -------------------------


def test_undo_keeps_a_blob_another_lease_reused(store: Store) -> None:
    """Pull A added X; pull B found X present and leased it; A fails and undoes."""
    store.blob_grace_seconds = 600  # undo ignores the grace period: A's blobs are young
    with store.lease() as a:
        x = store.put_bytes(b"added by A, reused by B")
        only_a = store.put_bytes(b"added by A only")
        with store.lease() as b:
            assert store.lease_existing_blob(x, b)
            removed = store.delete_blobs_if_unreferenced([x, only_a], except_leases=[a])
            assert removed == [only_a]
            assert store.has_blob(x) and not store.has_blob(only_a)
        # B is done (and registered nothing): now X is A's alone
        assert store.delete_blobs_if_unreferenced([x, only_a], except_leases=[a]) == [x]
        assert not store.has_blob(x)


def test_undo_of_a_pull_inside_a_build_is_not_kept_by_the_builds_lease(store: Store) -> None:
    """A build's FROM pulls under the build's lease; the pull fails and undoes: the
    blobs it fetched joined both leases, and both are the failing operation's own."""
    with store.lease() as build, store.lease() as pull:
        x = store.put_bytes(b"fetched by a pull inside a build")
        assert store.delete_blobs_if_unreferenced([x], except_leases=[pull]) == []
        assert [lease.id for lease in store.leases.open()] == [build.id, pull.id]
        assert store.delete_blobs_if_unreferenced([x], except_leases=store.leases.open()) == [x]
    assert not store.has_blob(x)


def test_undo_keeps_a_blob_an_image_references(store: Store) -> None:
    """Load A added X; a concurrent operation registered an image using X; A fails."""
    with store.lease() as a:
        image_id, blobs = stored_image(store, "shared")  # all written under A
        junk = store.put_bytes(b"A's own junk")
        removed = store.delete_blobs_if_unreferenced([*blobs, junk], except_leases=[a])
        assert removed == [junk]
    assert all(store.has_blob(d) for d in blobs)
    assert store.fsck() == []


def test_undo_ignores_expired_leases_and_absent_blobs(store: Store) -> None:
    with store.lease(ttl=-1):
        d = store.put_bytes(b"held by an expired lease")
    gone = Digest.of_bytes(b"never stored")
    assert store.delete_blobs_if_unreferenced([d, gone, d]) == [d]
    assert not store.has_blob(d)


# what a deleted image held goes at once; roots reach the sweepers --------------------------


def test_a_deleted_images_blobs_go_inside_the_grace_period(store: Store) -> None:
    store.blob_grace_seconds = 600
    image_id, blobs = stored_image(store, "deleted")
    kept_id, kept = stored_image(store, "kept")
    young = store.put_bytes(b"written by work in flight, no lease")
    on_disk = sum(store.blob_size(d) for d in blobs)
    time.sleep(0.1)  # the deletion comes after the writes (file times are coarse)
    store.delete_image(image_id)
    result = store.gc()
    assert (result.blobs_removed, result.bytes_freed) == (3, on_disk)
    assert not any(store.has_blob(d) for d in blobs)
    assert store.has_blob(young) and all(store.has_blob(d) for d in kept)
    assert store.gc().blobs_removed == 0  # released entries are forgotten once swept


def test_a_blob_reused_after_the_deletion_keeps_its_grace(store: Store) -> None:
    store.blob_grace_seconds = 600
    image_id, (layer, config, manifest) = stored_image(store, "reused")
    time.sleep(0.1)
    store.delete_image(image_id)
    time.sleep(0.1)
    assert store.lease_existing_blob(layer)  # e.g. a load without a lease found it present
    assert store.gc().blobs_removed == 2
    assert store.has_blob(layer)


def test_a_leased_image_releases_nothing_when_deleted(store: Store) -> None:
    store.blob_grace_seconds = 600
    image_id, blobs = stored_image(store, "leased")
    time.sleep(0.1)
    with store.lease() as lease:
        lease.add_image(image_id)
        store.delete_image(image_id)
    # the lease is over, but the build that held it may still unpack its chains: no fast path
    assert store.db.query("SELECT * FROM released") == []


class RecordingSweeper:
    """Stands in for the snapshotter: records what the store GC tells a sweeper."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def sweep(self, keep_layers, keep_active, released, dry_run=False):
        self.calls.append((set(keep_layers), set(keep_active), dict(released), dry_run))
        return (2, 12345)


def test_gc_tells_its_sweepers_the_roots_and_adds_their_bytes(store: Store) -> None:
    gone_id, _ = stored_image(store, "gone")
    kept_id, _ = stored_image(store, "kept")
    rec = ContainerRecord("e" * 64, "w", kept_id, {}, 0.0, snapshot_key="kiln-container-e")
    store.put_container(rec)
    assert store.get_container("e" * 64).snapshot_key == "kiln-container-e"
    gone_chain = store.get_image(gone_id).layers[0]
    kept_chain = store.get_image(kept_id).layers[0]
    store.delete_image(gone_id)
    sweeper = RecordingSweeper()
    dry = store.gc(dry_run=True, sweepers=[sweeper])
    result = store.gc(sweepers=[sweeper])
    keep_layers, keep_active, released, dry_run = sweeper.calls[-1]
    assert keep_layers == {kept_chain} and keep_active == {"kiln-container-e"}
    assert set(released) == {gone_chain} and not dry_run and sweeper.calls[0][3]
    assert (result.snapshots_removed, result.snapshot_bytes_freed) == (2, 12345)
    assert result.bytes_freed == dry.bytes_freed > 12345  # the blobs' bytes + the sweeper's
    store.gc(sweepers=[sweeper])
    assert sweeper.calls[-1][2] == {}  # forgotten once a sweeper has seen them


def test_a_deletion_during_a_collection_is_freed_by_the_next_one(store: Store) -> None:
    """An rmi in another process between this GC's mark and its end: its released
    entries were not seen, so they stay, and the next GC frees that image at once."""
    store.blob_grace_seconds = 600
    late_id, late_blobs = stored_image(store, "deleted during the sweep")
    time.sleep(0.1)

    class DeletesMeanwhile(RecordingSweeper):
        def sweep(self, keep_layers, keep_active, released, dry_run=False):
            if not self.calls:
                store.delete_image(late_id)
            return super().sweep(keep_layers, keep_active, released, dry_run)

    sweeper = DeletesMeanwhile()
    store.gc(sweepers=[sweeper])
    assert all(store.has_blob(d) for d in late_blobs)  # marked before the deletion
    assert store.gc(sweepers=[sweeper]).blobs_removed == 3
    assert set(sweeper.calls[-1][2]) == {
        f"sha256:{Digest.of_bytes(b'deleted during the sweep').hex}"
    }
