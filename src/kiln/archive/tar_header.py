"""Tar headers for layer entries, byte for byte what ``tarfile`` writes in PAX format.

``tarfile.TarInfo.tobuf`` costs ~40 us a header (a dict, a dozen encodes, a struct
pack, a checksum pass), which is most of what writing 20,000 small files takes. Almost
every header of a layer is plain ustar: an ASCII name and link target of at most 100
bytes, ids and times that fit their octal fields, no extended attributes. Those are
built here directly (~4 us); everything else goes through ``tarfile`` as before. Both
paths give the same bytes (``tests/unit/test_archive_tar_header.py`` compares them), so
layer digests do not depend on which one wrote a header.
"""

from __future__ import annotations

__all__ = [
    "BLKTYPE", "BLOCKSIZE", "CHRTYPE", "DIRTYPE", "FIFOTYPE", "LNKTYPE", "REGTYPE", "SYMTYPE",
    "ustar_header",
]  # fmt: skip

# tarfile's own values (a unit test compares them): a build whose layers need no extended
# header never imports tarfile, which costs a short command about a millisecond
REGTYPE, LNKTYPE, SYMTYPE, CHRTYPE = b"0", b"1", b"2", b"3"
BLKTYPE, DIRTYPE, FIFOTYPE = b"4", b"5", b"6"
BLOCKSIZE = 512

_NUL8 = bytes(8)
_TAIL = b"ustar\x0000" + bytes(64)  # magic, version, empty uname and gname
_MAX7 = 8**7  # octal fields of 8 bytes hold 7 digits
_MAX11 = 8**11  # size and mtime: 12 bytes, 11 digits


def ustar_header(
    name: str,
    kind: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: str = "",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes | None:
    """The 512-byte header ``tarfile`` writes (PAX format, empty user and group names) for
    an entry that needs no extended header; None when one is needed (the caller then asks
    ``tarfile``). ``name`` is the member name as written (a directory's ends with ``/``)."""
    if not (0 <= uid < _MAX7 and 0 <= gid < _MAX7 and 0 <= size < _MAX11 and 0 <= mtime < _MAX11):
        return None
    if kind == DIRTYPE and not name.endswith("/"):
        name += "/"  # as tarfile names a directory
    if not (name.isascii() and linkname.isascii()):
        return None
    raw_name = name.encode("ascii")
    raw_link = linkname.encode("ascii")
    if len(raw_name) > 100 or len(raw_link) > 100:
        return None
    if kind in (CHRTYPE, BLKTYPE):
        if not (0 <= devmajor < _MAX7 and 0 <= devminor < _MAX7):
            return None
        dev = b"%07o\0%07o\0" % (devmajor, devminor)
    else:
        dev = _NUL8 + _NUL8
    head = b"".join(
        (
            raw_name.ljust(100, b"\0"),
            b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode & 0o7777, uid, gid, size, mtime),
            b"        ",
            kind,
            raw_link.ljust(100, b"\0"),
            _TAIL,
            dev,
        )
    )
    # the checksum is the byte sum with its own field as spaces: "%06o\0 " over bytes 148-155
    chksum = sum(head)
    return b"".join((head[:148], b"%06o\0 " % chksum, head[156:], bytes(512 - len(head))))
