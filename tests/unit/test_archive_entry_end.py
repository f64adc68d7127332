"""A tar that stops right after an entry's data (the docker CLI's build context for ``-f -``):
complete for ``extract_tar(..., entry_end_ok=True)``; every other cut is still truncated."""

from __future__ import annotations

import io
import tarfile

import pytest

from kiln.archive.applier import apply_layer, extract_tar
from kiln.errors import InvalidArgument

FILES = {"dir/a.txt": b"alpha\n", "b.bin": bytes(range(256)) * 3, ".dockerignore": b"x" * 47}


def full_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def last_data_end(data: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        last = tf.getmembers()[-1]
    return last.offset_data + last.size


def test_stream_ending_after_the_last_entrys_data_is_complete(tmp_path):
    data = full_tar()
    end = last_data_end(data)
    assert end % 512 != 0  # no padding, no end-of-archive blocks: what the docker CLI sends
    res = extract_tar(io.BytesIO(data[:end]), str(tmp_path), entry_end_ok=True)
    assert res.entries == 4
    for name, content in FILES.items():
        assert (tmp_path / name).read_bytes() == content


def test_stream_ending_after_the_padding_is_complete(tmp_path):
    data = full_tar()
    padded = -(-last_data_end(data) // 512) * 512
    extract_tar(io.BytesIO(data[:padded]), str(tmp_path), entry_end_ok=True)
    assert (tmp_path / ".dockerignore").read_bytes() == FILES[".dockerignore"]


@pytest.mark.parametrize("cut", [-1, -10, -47, -47 - 1, -47 - 300, -47 - 512 - 10])
def test_other_cuts_are_still_truncated(tmp_path, cut):
    data = full_tar()[: last_data_end(full_tar()) + cut]
    with pytest.raises(InvalidArgument, match="truncated"):
        extract_tar(io.BytesIO(data), str(tmp_path), entry_end_ok=True)


def test_a_layer_must_be_whole(tmp_path):
    data = full_tar()
    with pytest.raises(InvalidArgument, match="truncated"):
        apply_layer(io.BytesIO(data[: last_data_end(data)]), str(tmp_path), whiteouts="none")
    with pytest.raises(InvalidArgument, match="truncated"):
        extract_tar(io.BytesIO(data[: last_data_end(data)]), str(tmp_path))
