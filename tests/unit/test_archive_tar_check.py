"""kiln.archive.tar_check: the gate for tarballs that become a layer on their own."""

from __future__ import annotations

import io

import pytest

from archive_corpus import LNK, REG, SYM, tar_of  # noqa: E402
from kiln.archive.tar_check import check_tar  # noqa: E402
from kiln.errors import InvalidArgument  # noqa: E402
from kiln.image.layers import recompress  # noqa: E402


@pytest.mark.parametrize(
    "data, words",
    [
        (tar_of(("../pwned", REG, b"x")), "outside the layer root"),
        (tar_of(("h", LNK, "/etc/passwd")), "not in the archive"),
        (tar_of(("a", REG, b"x" * 5000))[:2000], "truncated"),
        (b"plain text, not a tar\n" * 50, "not a valid tar"),
    ],
)
def test_refused(data, words):
    with pytest.raises(InvalidArgument, match=words):
        check_tar(io.BytesIO(data))


def test_accepted_reads_everything():
    data = tar_of(("a", REG, b"x" * 3000), ("l", SYM, "/etc"), ("h", LNK, "a"), ("/abs", REG, b""))
    stream = io.BytesIO(data + b"\0" * 4096)
    assert check_tar(stream) == 4
    assert stream.tell() == len(data) + 4096


def test_checked_recompress_gives_the_same_bytes():
    data = tar_of(*((f"f{i}", REG, bytes([i]) * 300_000) for i in range(12)))
    plain, checked = io.BytesIO(), io.BytesIO()
    a = recompress(io.BytesIO(data), plain, "gzip")
    b = recompress(io.BytesIO(data), checked, "gzip", check=check_tar)
    assert a == b and plain.getvalue() == checked.getvalue()
