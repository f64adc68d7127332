"""ADD's archive detection: a compressed file is a tar when its decompressed start is a tar
header, and the decompressing reader the check opened is closed when it returns (isal's gzip
reader is invisible to the cycle collector: see DecompressingReader.close)."""

from __future__ import annotations

import gzip

import pytest

from archive_corpus import REG, tar_of
from kiln.archive.safe_root import SafeRoot
from kiln.container import tar_detect


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (gzip.compress(tar_of(("hello", REG, b"hello"))), True),
        (gzip.compress(b"not a tar " * 100), False),
    ],
    ids=["gzip-tar", "gzip-text"],
)
def test_is_archive_closes_the_reader_it_opened(tmp_path, monkeypatch, content, expected):
    (tmp_path / "f").write_bytes(content)
    opened = []
    real_open = tar_detect.open_decompressed

    def spy(*args, **kwargs):
        reader = real_open(*args, **kwargs)
        opened.append(reader)
        return reader

    monkeypatch.setattr(tar_detect, "open_decompressed", spy)
    with SafeRoot(str(tmp_path)) as root:
        assert tar_detect.is_archive(root, "f") is expected
    assert len(opened) == 1
    assert opened[0].closed
