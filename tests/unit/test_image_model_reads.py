"""kiln.image.model.read_blob: a small blob costs its own size, whatever its limit; a blob
over the limit is refused, one of many chunks read whole and checked."""

from __future__ import annotations

import tracemalloc

import pytest

from kiln.errors import DigestMismatch, InvalidArgument
from kiln.image.model import read_blob
from kiln.oci import Descriptor, Digest
from kiln.oci import media_types as mt
from kiln.oci.strict_json import MAX_CONFIG_BYTES


class FileSource:
    """Blobs as files in a directory, opened as a store opens them (buffered files)."""

    def __init__(self, root):
        self.root = root

    def put(self, data: bytes) -> Digest:
        digest = Digest.of_bytes(data)
        (self.root / digest.hex).write_bytes(data)
        return digest

    def has_blob(self, digest: Digest) -> bool:
        return (self.root / digest.hex).exists()

    def open_blob(self, digest: Digest):
        return open(self.root / digest.hex, "rb")


def test_a_small_blob_is_read_without_a_buffer_of_its_limit(tmp_path):
    source = FileSource(tmp_path)
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = source.put(config)
    read_blob(source, digest, MAX_CONFIG_BYTES, "image config")  # warm: imports, caches
    tracemalloc.start()
    try:
        assert read_blob(source, digest, MAX_CONFIG_BYTES, "image config") == config
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"reading a {len(config)}-byte blob peaked at {peak} bytes"


def test_blobs_of_many_chunks_are_read_whole_and_over_the_limit_refused(tmp_path):
    source = FileSource(tmp_path)
    big = bytes(range(256)) * 1000  # 256,000 bytes: several reads
    digest = source.put(big)
    desc = Descriptor(mt.OCI_CONFIG, digest, len(big))
    assert read_blob(source, desc, len(big), "image config") == big
    with pytest.raises(InvalidArgument, match="over the 255999-byte limit"):
        read_blob(source, desc, len(big) - 1, "image config")
    with pytest.raises(DigestMismatch, match="descriptor says"):
        read_blob(source, Descriptor(mt.OCI_CONFIG, digest, len(big) + 1), len(big), "config")
