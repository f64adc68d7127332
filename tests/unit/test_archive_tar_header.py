"""The fast ustar headers are byte for byte what tarfile writes, so layer digests do not
depend on which path wrote a header; entries that need an extended header are left to
tarfile."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from kiln.archive import tar_header
from kiln.archive.compression import Compression
from kiln.archive.tar_header import ustar_header
from kiln.archive.tar_writer import TarEntry, write_layer


def _tarfile(name, kind, mode, uid, gid, size, mtime, linkname="", devmajor=0, devminor=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
    info.uname = info.gname = ""
    info.size, info.mtime, info.linkname = size, mtime, linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = devmajor, devminor
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


EDGES = [
    ("etc/passwd", tarfile.REGTYPE, 0o644, 0, 0, 1234, 1_700_000_000),
    ("usr/", tarfile.DIRTYPE, 0o755, 1000, 1000, 0, 0),
    ("./", tarfile.DIRTYPE, 0o755, 0, 0, 0, 0),
    ("bin/sh", tarfile.SYMTYPE, 0o777, 0, 0, 0, 1, "/bin/busybox"),
    ("bin/ls", tarfile.LNKTYPE, 0o755, 0, 0, 0, 1, "bin/busybox"),
    ("dev/null", tarfile.CHRTYPE, 0o666, 0, 0, 0, 0, "", 1, 3),
    ("dev/sda", tarfile.BLKTYPE, 0o660, 0, 6, 0, 0, "", 8**7 - 1, 0),
    ("p", tarfile.FIFOTYPE, 0o600, 0, 0, 0, 0),
    (
        "n" * 100,
        tarfile.REGTYPE,
        0o4755 | 0o2000 | 0o1000,
        8**7 - 1,
        8**7 - 1,
        8**11 - 1,
        8**11 - 1,
    ),
    ("l", tarfile.SYMTYPE, 0o777, 0, 0, 0, 0, "t" * 100),
]


@pytest.mark.parametrize("case", EDGES, ids=[c[0][:12] for c in EDGES])
def test_plain_headers_match_tarfile(case):
    assert ustar_header(*case) == _tarfile(*case)


def test_random_plain_headers_match_tarfile():
    rnd = random.Random(15)
    kinds = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]
    for _ in range(2000):
        name = "".join(rnd.choice("ab/._-x9 ") for _ in range(rnd.randint(1, 100)))
        case = (name, rnd.choice(kinds), rnd.randint(0, 0o7777), rnd.randint(0, 8**7 - 1),
                rnd.randint(0, 70000), rnd.randint(0, 8**11 - 1), rnd.randint(0, 8**11 - 1),
                "t" * rnd.randint(0, 100), rnd.randint(0, 255), rnd.randint(0, 255))  # fmt: skip
        fast, ref = ustar_header(*case), _tarfile(*case)
        if fast is None:  # a directory's name grown past 100 bytes by its "/"
            assert ref.startswith(b"././@PaxHeader") and len(case[0]) == 100
        else:
            assert fast == ref


@pytest.mark.parametrize(
    "case",
    [
        ("n" * 101, tarfile.REGTYPE, 0o644, 0, 0, 0, 0),  # long name
        ("caf\u00e9", tarfile.REGTYPE, 0o644, 0, 0, 0, 0),  # not ASCII
        ("l", tarfile.SYMTYPE, 0o777, 0, 0, 0, 0, "t" * 101),  # long link target
        ("big", tarfile.REGTYPE, 0o644, 8**7, 0, 0, 0),  # uid beyond 7 octal digits
        ("huge", tarfile.REGTYPE, 0o644, 0, 0, 8**11, 0),  # 8 GiB and more
        ("late", tarfile.REGTYPE, 0o644, 0, 0, 0, 8**11),  # mtime past the field
    ],
)
def test_entries_needing_pax_are_left_to_tarfile(case):
    assert ustar_header(*case) is None
    assert _tarfile(*case).startswith(b"././@PaxHeader")


def test_layer_bytes_are_those_tarfile_writes(tmp_path):
    """A layer of plain entries (fast path) and the same layer read back by tarfile and
    rewritten by it give the same tar bytes."""
    f = tmp_path / "f"
    f.write_bytes(b"data\n" * 300)
    entries = [
        TarEntry("a", "dir", mode=0o755, mtime=5 * 10**9),
        TarEntry("a/f", "file", source=str(f), size=1500, uid=7, gid=8, mtime=6 * 10**9),
        TarEntry("a/l", "symlink", linkname="f", mode=0o777),
        TarEntry("a/\u00e9t\u00e9", "file", source=str(f), size=1500),  # tarfile's path
    ]
    out = io.BytesIO()
    write_layer(entries, out, compression=Compression.NONE)
    again = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(out.getvalue())) as src,
        tarfile.open(fileobj=again, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src.getmembers():
            member.uname = member.gname = ""
            member.pax_headers = {}
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    rewritten = again.getvalue()
    # tarfile pads its archive to a 10 KiB record; kiln ends after the two zero blocks
    assert rewritten[: len(out.getvalue())] == out.getvalue()


@pytest.mark.parametrize(
    "name",
    ["REGTYPE", "LNKTYPE", "SYMTYPE", "CHRTYPE", "BLKTYPE", "DIRTYPE", "FIFOTYPE", "BLOCKSIZE"],
)
def test_the_header_constants_are_tarfiles(name):
    """The writer takes type flags and the block size from here, not from tarfile (whose
    import a short build would pay for): they are tarfile's own values."""
    assert getattr(tar_header, name) == getattr(tarfile, name)
    assert type(getattr(tar_header, name)) is type(getattr(tarfile, name))
