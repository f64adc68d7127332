"""Leases travel in a ContextVar: a thread pool whose tasks run in a copy of the
submitting context protects their blobs with the operation's lease, with no code of
their own; a lease of one store never joins writes to another."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from kiln.oci import Digest
from kiln.store import Store
from sql_trace import statements_during


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "root"))
    s.blob_grace_seconds = 0  # only a lease keeps an unreferenced blob
    yield s
    s.close()


def _put_then_collect(store: Store, n: int) -> tuple[Digest, int]:
    """A pool task: write a blob, then let a GC run while the work is still going on."""
    digest = store.put_bytes(f"work of task {n}".encode())
    return digest, store.gc().blobs_removed


def test_pool_work_in_a_copied_context_is_protected_by_the_lease(store: Store) -> None:
    with store.lease() as lease, ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, _put_then_collect, store, n)
            for n in range(4)
        ]
        results = [f.result(timeout=60) for f in futures]
        held = {r[0] for r in store.db.query(
            "SELECT ref FROM lease_resources WHERE lease_id=?", (lease.id,))}  # fmt: skip
        assert all(store.has_blob(d) for d, _ in results)
        assert {str(d) for d, _ in results} <= held
        assert [removed for _, removed in results] == [0, 0, 0, 0]
        assert store.current_lease() is lease
    store.gc()  # the lease is gone: nothing holds them any more
    assert not any(store.has_blob(d) for d, _ in results)


def test_a_task_outside_the_context_is_not_protected(store: Store) -> None:
    """What the copy is for: a bare submit runs in the worker's own context."""
    with store.lease(), ThreadPoolExecutor(1) as pool:
        digest = pool.submit(store.put_bytes, b"unleased").result(timeout=60)
        assert pool.submit(store.current_lease).result(timeout=60) is None
        store.gc()
        assert not store.has_blob(digest)


def test_a_lease_handed_over_explicitly_is_joined(store: Store) -> None:
    with store.lease() as lease, ThreadPoolExecutor(1) as pool:

        def task() -> Digest:
            with store.joined(lease):
                assert store.current_lease() is lease
                return store.put_bytes(b"explicit")

        digest = pool.submit(task).result(timeout=60)
        store.gc()
        assert store.has_blob(digest)
    assert store.current_lease() is None


def test_leases_are_per_store(store: Store, tmp_path) -> None:
    with Store.open(str(tmp_path / "other")) as other:
        other.blob_grace_seconds = 0
        with store.lease() as lease:
            assert other.current_lease() is None
            digest = other.put_bytes(b"written to the other store")  # no foreign-key error
            other.gc()
            assert not other.has_blob(digest)
            assert store.current_lease() is lease


def test_same_root_opened_twice_shares_the_open_lease(store: Store) -> None:
    """A lease belongs to the store's database, not to one Store object (a server
    thread's store and an operation's see the same leases)."""
    with Store.open(store.root) as again, store.lease() as lease:
        seen = again.current_lease()
        assert seen is not None and seen.id == lease.id
        digest = again.put_bytes(b"through the second handle")
        again.gc()
        assert again.has_blob(digest)


def test_nested_leases_unwind_in_order(store: Store) -> None:
    with store.lease() as outer:
        with store.lease() as inner:
            assert store.current_lease() is inner
        assert store.current_lease() is outer
    assert store.current_lease() is None


def _lease_row_writes(store: Store, body) -> int:
    """How many statements writing a lease's own rows ``body`` ran (this thread's)."""
    seen = statements_during(store, body)
    return sum(1 for sql in seen if "INTO leases" in sql or "INTO lease_owners" in sql)


def test_a_lease_row_is_written_once_per_transaction(store: Store) -> None:
    """A step's commit joins blobs, then its image, then the image's blobs: one transaction,
    the lease's rows written at its first join only."""
    a, b = store.put_bytes(b"a"), store.put_bytes(b"b")
    with store.lease() as lease:

        def joins() -> None:
            with store.db.transaction():
                store.leases.join_blobs([a])
                store.leases.join_blobs([b])
                lease.add_blob(a)

        assert _lease_row_writes(store, joins) == 2
        assert _lease_row_writes(store, joins) == 2  # a new transaction writes them again
        held = {r[0] for r in store.db.query(
            "SELECT ref FROM lease_resources WHERE lease_id=?", (lease.id,))}  # fmt: skip
        assert held == {str(a), str(b)}


def test_a_rolled_back_join_leaves_the_next_one_to_write_the_lease_row(store: Store) -> None:
    a = store.put_bytes(b"a")
    with store.lease() as lease:
        with pytest.raises(RuntimeError), store.db.transaction():
            store.leases.join_blobs([a])
            raise RuntimeError("the write fails after the join")
        assert store.db.one("SELECT 1 FROM leases WHERE id=?", (lease.id,)) is None
        store.leases.join_blobs([a])
        assert store.db.one("SELECT 1 FROM leases WHERE id=?", (lease.id,)) is not None
        assert store.db.one(
            "SELECT 1 FROM lease_owners WHERE lease_id=?", (lease.id,)
        ) is not None  # fmt: skip


def test_a_transaction_number_is_only_had_inside_its_write_transaction(store: Store) -> None:
    """What lets a lease skip writing its rows again: a number for the write transaction
    under way; none after it, none in a read view (whatever transaction came before)."""
    db = store.db
    assert db.transaction_id() is None
    with db.transaction():
        first = db.transaction_id()
        with db.transaction():  # a nested call joins it
            assert db.transaction_id() == first
    assert first is not None and db.transaction_id() is None
    with pytest.raises(RuntimeError), db.transaction():
        raise RuntimeError("rolled back")
    with db.snapshot():
        assert db.transaction_id() is None
    with db.transaction():
        assert db.transaction_id() not in (None, first)


def test_a_lease_of_another_store_object_writes_its_rows_and_opens_nothing(
    store: Store, tmp_path
) -> None:
    """A lease handed over from another store object (another context's, the same
    database): joined in this one's transaction, it writes its rows, and asks its own
    database for no connection on this thread."""
    other = Store.open(store.root)
    try:
        with other.lease() as lease:
            opened = len(other.db._all)
            digest = store.put_bytes(b"joined")

            def join() -> None:  # a thread on which the other store has no connection
                with store.db.transaction():
                    store.leases.join_blobs([digest], lease)
                    store.leases.join_blobs([digest], lease)

            with ThreadPoolExecutor(1) as pool:
                pool.submit(join).result(timeout=60)
            assert len(other.db._all) == opened
            assert store.db.one("SELECT 1 FROM leases WHERE id=?", (lease.id,)) is not None
    finally:
        other.close()
