"""A layer's gzip stores the 1 MiB slices that would not shrink, compresses the rest as
before, and stays a plain gzip stream any reader reads (the golden digests pin its bytes:
tests/golden/test_archive_digest.py)."""

from __future__ import annotations

import gzip
import hashlib
import io
import random

from isal import igzip

from kiln.archive.compression import CHUNK, Compression, deflate_module
from kiln.archive.tar_writer import TarEntry, write_layer
from kiln.image.layers import recompress

TEXT = b"".join(b"%08d a line of text that compresses well enough\n" % i for i in range(60_000))


def _layer(tmp_path, parts: list[bytes]) -> tuple[bytes, bytes]:
    """(tar, gzip blob) of a layer of one file per part."""
    entries = []
    for i, data in enumerate(parts):
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        entries.append(TarEntry(f"f{i}", "file", source=str(path), size=len(data), mode=0o644))
    plain, blob = io.BytesIO(), io.BytesIO()
    write_layer(entries, plain, compression=Compression.NONE, timestamp=0)
    write_layer(entries, blob, compression=Compression.GZIP, timestamp=0)
    return plain.getvalue(), blob.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _compressobj_gzip(tar: bytes) -> bytes:
    """What a gzip compressobj (wbits 31) makes of ``tar`` given 1 MiB slices: the writer's
    stream when nothing is stored."""
    zlib = deflate_module()
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join(c.compress(tar[i : i + CHUNK]) for i in range(0, len(tar), CHUNK)) + c.flush()


def test_incompressible_data_is_stored_not_compressed(tmp_path):
    noise = random.Random(1).randbytes(4 << 20)
    tar, blob = _layer(tmp_path, [noise])
    # after the 10-byte gzip header: the tar's bytes as they are, in stored blocks of
    # 65535 bytes, each after its 5-byte header (not final, stored; length; its complement)
    first = blob[10 : 10 + 5 + 0xFFFF]
    assert first[:5] == b"\x00\xff\xff\x00\x00"
    assert first[5:] == tar[:0xFFFF]
    assert len(blob) <= len(tar) + 5 * (len(tar) // 0xFFFF + 1) + 32
    assert gzip.decompress(blob) == tar
    assert igzip.decompress(blob) == tar
    # an import of the same tar (recompress) writes the same blob
    again = io.BytesIO()
    assert recompress(io.BytesIO(tar), again, "gzip").digest == "sha256:" + sha256(blob)
    assert again.getvalue() == blob


def test_compressible_layers_keep_the_bytes_they_had(tmp_path):
    tar, blob = _layer(tmp_path, [TEXT, TEXT[::-1]])
    assert len(blob) < len(tar) // 4
    assert blob == _compressobj_gzip(tar)


def test_text_after_stored_noise_never_refers_back_across_it(tmp_path):
    """Each kind of slice follows the other: a match in the text after the noise must not
    reach the text before it (the compressor forgets its window when a slice is stored)."""
    noise = random.Random(2).randbytes(2 * CHUNK)
    tar, blob = _layer(tmp_path, [TEXT, noise, TEXT, noise[:CHUNK], TEXT[: CHUNK // 3]])
    assert gzip.decompress(blob) == tar
    assert igzip.decompress(blob) == tar
    assert len(blob) < len(tar) - len(TEXT)  # the text is still compressed
    again = _layer(tmp_path, [TEXT, noise, TEXT, noise[:CHUNK], TEXT[: CHUNK // 3]])[1]
    assert again == blob  # deterministic
