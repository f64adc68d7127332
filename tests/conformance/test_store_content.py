"""Content-store conformance: every BlobSink/ingest implementation must pass these."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from kiln.errors import Conflict, DigestMismatch, NotFound
from kiln.oci import BlobSink, BlobSource, Descriptor, Digest
from kiln.store import Store

OCTET = "application/octet-stream"


def desc_of(data: bytes, algorithm: str = "sha256") -> Descriptor:
    return Descriptor(OCTET, Digest.of_bytes(data, algorithm), len(data))


@pytest.fixture(params=["store"])
def store(request, tmp_path) -> Iterator[Store]:
    s = Store.open(str(tmp_path / "root"))
    yield s
    s.close()


def visible_files(root: str) -> list[str]:
    out = []
    for d, _, files in os.walk(os.path.join(root, "blobs")):
        out += [os.path.join(d, f) for f in files]
    return sorted(out)


def ingest_entries(root: str) -> list[str]:
    return os.listdir(os.path.join(root, "ingest"))


def test_speaks_the_blob_protocols(store: Store) -> None:
    assert isinstance(store, BlobSource)
    assert isinstance(store, BlobSink)


def test_put_blob_then_read_back(store: Store) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks
    d = desc_of(data)
    assert not store.has_blob(d.digest)
    store.put_blob(d, io.BytesIO(data))
    assert store.has_blob(d.digest)
    with store.open_blob(d.digest) as f:
        assert f.read() == data
    assert store.blob_path(d.digest).endswith(os.path.join("blobs", "sha256", d.digest.hex))
    assert ingest_entries(store.root) == []


def test_put_bytes_returns_sha256(store: Store) -> None:
    digest = store.put_bytes(b"hello")
    assert str(digest) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.open_blob(digest).read() == b"hello"


def test_open_missing_blob_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.open_blob(Digest.of_bytes(b"nope"))


@pytest.mark.parametrize(
    "data, claimed",
    [
        (b"hello world", b"HELLO world"),  # same size, wrong digest
        (b"hello world", b"hello world!"),  # short
        (b"hello world!!", b"hello world"),  # too long
    ],
)
def test_mismatch_raises_and_keeps_nothing(store: Store, data: bytes, claimed: bytes) -> None:
    d = desc_of(claimed)
    with pytest.raises(DigestMismatch) as info:
        store.put_blob(d, io.BytesIO(data))
    assert info.value.expected == str(d.digest)
    assert info.value.actual
    assert not store.has_blob(d.digest)
    assert not store.has_blob(Digest.of_bytes(data))
    assert visible_files(store.root) == []
    assert ingest_entries(store.root) == []


def test_size_mismatch_with_right_digest_is_refused(store: Store) -> None:
    data = b"abc"
    d = Descriptor(OCTET, Digest.of_bytes(data), 4)
    with pytest.raises(DigestMismatch):
        store.put_blob(d, io.BytesIO(data))
    assert not store.has_blob(d.digest)


def test_put_existing_blob_is_a_no_op(store: Store) -> None:
    d = desc_of(b"same")
    store.put_blob(d, io.BytesIO(b"same"))
    store.put_blob(d, io.BytesIO(b"same"))
    assert store.open_blob(d.digest).read() == b"same"
    assert ingest_entries(store.root) == []


def test_sha512_digests(store: Store) -> None:
    data = b"x" * 5000
    d = desc_of(data, "sha512")
    store.put_blob(d, io.BytesIO(data))
    assert store.has_blob(d.digest)
    assert store.blob_path(d.digest).endswith(os.path.join("blobs", "sha512", d.digest.hex))
    assert store.open_blob(d.digest).read() == data
    with pytest.raises(DigestMismatch):
        store.put_blob(desc_of(b"other", "sha512"), io.BytesIO(b"0ther"))


def test_ingest_without_expected_computes_digest(store: Store) -> None:
    with store.ingest("") as ing:
        ing.write(b"part1-")
        ing.write(b"part2")
        digest = ing.commit()
    assert digest == Digest.of_bytes(b"part1-part2")
    assert store.open_blob(digest).read() == b"part1-part2"


def test_resume_by_ref(store: Store) -> None:
    data = os.urandom(2 * (1 << 20) + 5)
    d = desc_of(data)
    with store.ingest("pull-layer-1", d) as ing:
        assert ing.offset == 0
        ing.write(data[:1000])
        # interrupted: leaves the with-block without commit
    assert not store.has_blob(d.digest)
    with pytest.raises(RuntimeError), store.ingest("pull-layer-1", d) as ing:
        assert ing.offset == 1000
        ing.write(data[1000 : 1 << 20])
        raise RuntimeError("connection reset")
    assert not store.has_blob(d.digest)
    with store.ingest("pull-layer-1", d) as ing:
        assert ing.offset == 1 << 20
        ing.write(data[ing.offset :])
        assert ing.commit() == d.digest
    assert store.open_blob(d.digest).read() == data
    assert ingest_entries(store.root) == []
    with store.ingest("pull-layer-1", d) as ing:  # the ref starts fresh after commit
        assert ing.offset == 0


def test_resume_with_mismatch_keeps_nothing(store: Store) -> None:
    d = desc_of(b"good data")
    with store.ingest("r", d) as ing:
        ing.write(b"bad ")
    with store.ingest("r", d) as ing:
        ing.write(b"data!")
        with pytest.raises(DigestMismatch):
            ing.commit()
    assert ingest_entries(store.root) == []
    with store.ingest("r", d) as ing:
        assert ing.offset == 0


def test_same_ref_twice_at_once_is_a_conflict(store: Store) -> None:
    with store.ingest("busy") as ing:
        ing.write(b"x")
        with pytest.raises(Conflict):
            store.ingest("busy")


def test_concurrent_ingest_of_same_blob_from_threads(store: Store) -> None:
    data = os.urandom(4 * (1 << 20))
    d = desc_of(data)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            store.put_blob(d, io.BytesIO(data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.open_blob(d.digest).read() == data
    assert visible_files(store.root) == [store.blob_path(d.digest)]
    assert ingest_entries(store.root) == []


CHILD = """
import io, sys
from kiln.oci import Descriptor, Digest
from kiln.store import Store
data = bytes(range(256)) * 8192
s = Store.open(sys.argv[1])
for _ in range(5):
    s.put_blob(Descriptor("application/octet-stream", Digest.of_bytes(data), len(data)),
               io.BytesIO(data))
s.put_bytes(sys.argv[2].encode())
print(len(s.list_images()))
"""


def test_concurrent_ingest_of_same_blob_from_processes(store: Store) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, store.root, f"p{i}"], stdout=subprocess.PIPE)
        for i in range(6)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        assert out.strip() == b"0"
    data = bytes(range(256)) * 8192
    assert store.open_blob(Digest.of_bytes(data)).read() == data
    for i in range(6):
        assert store.has_blob(Digest.of_bytes(f"p{i}".encode()))
    assert ingest_entries(store.root) == []


def test_delete_blob(store: Store) -> None:
    digest = store.put_bytes(b"bye")
    store.delete_blob(digest)
    assert not store.has_blob(digest)
    with pytest.raises(NotFound):
        store.delete_blob(digest)


def test_existing_blob_is_not_read_again(store: Store) -> None:
    data = b"already here"
    d = desc_of(data)
    store.put_blob(d, io.BytesIO(data))

    class Unreadable(io.BytesIO):
        def read(self, *args):  # type: ignore[no-untyped-def]
            raise AssertionError("an existing blob must not be re-read")

    store.put_blob(d, Unreadable())
    assert store.open_blob(d.digest).read() == data
