"""Hostile and broken layer archives, built with tarfile, for applier and store tests.

Each case is (name, bytes, expect): ``expect`` is either an ``error`` substring the
``InvalidArgument`` message must contain, or ``None`` (the archive must apply,
contained inside the target). Whatever happens, nothing may be written outside
the target directory.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    error: str | None  # substring of the InvalidArgument message, None = must apply
    # relative paths (inside the target) that must exist afterwards, when it applies
    expect_inside: tuple[str, ...] = ()


def _info(name: str, kind=tarfile.REGTYPE, size: int = 0, **kw) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = kw.pop("mode", 0o644)
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def tar_of(*members: tuple, fmt=tarfile.PAX_FORMAT) -> bytes:
    """A tar from (name, type, content-or-linkname, extra attrs) tuples."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for spec in members:
            name, kind, payload, *extra = spec
            attrs = extra[0] if extra else {}
            if kind == tarfile.REGTYPE:
                data = payload or b""
                tf.addfile(_info(name, kind, len(data), **attrs), io.BytesIO(data))
            elif kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                tf.addfile(_info(name, kind, linkname=payload, **attrs))
            else:
                tf.addfile(_info(name, kind, **attrs))
    return buf.getvalue()


REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
CHR, FIFO = tarfile.CHRTYPE, tarfile.FIFOTYPE


# a layer deleting etc/gone and making var/cache opaque (one new file), and the lower
# tree it applies over: the whiteout tests' pair
WHITEOUT_LAYER = tar_of(
    ("etc", DIR, None),
    ("etc/.wh.gone", REG, b""),
    ("var", DIR, None),
    ("var/cache", DIR, None),
    ("var/cache/.wh..wh..opq", REG, b""),
    ("var/cache/new", REG, b"fresh"),
)


def whiteout_lower_tree(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "gone").write_text("old")
    (root / "etc" / "kept").write_text("old")
    (root / "var" / "cache" / "sub").mkdir(parents=True)
    (root / "var" / "cache" / "old").write_text("old")
    (root / "var" / "cache" / "sub" / "deep").write_text("old")


def _bad_checksum() -> bytes:
    data = bytearray(tar_of(("a", REG, b"x"), ("b", REG, b"y")))
    data[1024 + 148 : 1024 + 156] = b"0000000\x00"  # second header's checksum
    return bytes(data)


def _bad_first_checksum() -> bytes:
    data = bytearray(tar_of(("a", REG, b"x")))
    data[148:156] = b"1234567\x00"
    return bytes(data)


def _gzip_bad_trailer() -> bytes:
    data = bytearray(gzip.compress(tar_of(("a", REG, b"hello" * 100)), mtime=0))
    data[-8] ^= 0xFF  # CRC32
    return bytes(data)


def _gzip_bomb(size: int = 64 << 20) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = tar_of(("bomb", REG, b""))[:512]
    info = _info("bomb", REG, size)
    head = info.tobuf(tarfile.PAX_FORMAT)
    out = [comp.compress(head)]
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(comp.compress(zeros))
    out.append(comp.compress(bytes(1024)))
    out.append(comp.flush())
    return b"".join(out)


def _zstd_bomb(size: int = 256 << 20) -> bytes:
    cobj = zstandard.ZstdCompressor(level=19).compressobj()
    out = [cobj.compress(_info("bomb", REG, size).tobuf(tarfile.PAX_FORMAT))]
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(cobj.compress(zeros))
    out.append(cobj.compress(bytes(1024)))
    out.append(cobj.flush())
    return b"".join(out)


def _huge_pax() -> bytes:
    info = _info("a", REG, 0)
    info.pax_headers = {"comment": "x" * (2 << 20)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def _nul_in_pax_name() -> bytes:
    info = _info("placeholder", REG, 0)
    info.pax_headers = {"path": "evil\x00/../../x"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def _gnu_longname_escape() -> bytes:
    return tar_of(("../" * 40 + "a" * 120, REG, b"x"), fmt=tarfile.GNU_FORMAT)


def _size_lies() -> bytes:
    data = tar_of(("a", REG, b"x" * 600))
    return data[: 512 + 300]


def _unsupported_type() -> bytes:
    info = _info("vol", b"V", 0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(info)
    return buf.getvalue()


def build_corpus() -> list[Case]:
    """Every hostile or broken archive, with what applying it must do."""
    outside = "../outside-sentinel/pwned"
    return [
        Case("absolute path", tar_of(("/abs/pwned", REG, b"x")), None, ("abs/pwned",)),
        Case("dotdot traversal", tar_of(("../pwned", REG, b"x")), "outside the layer root"),
        Case("deep dotdot", tar_of(("a/../../../pwned", REG, b"x")), "outside the layer root"),
        Case("dotdot to sentinel", tar_of((outside, REG, b"x")), "outside the layer root"),
        Case(
            "inner dotdot stays inside",
            tar_of(("a/b/../c", REG, b"x")),
            None,
            ("a/c",),
        ),
        Case(
            "symlink escape then write",
            tar_of(("esc", SYM, "../outside-sentinel"), ("esc/pwned", REG, b"x")),
            None,
            ("outside-sentinel/pwned",),
        ),
        Case(
            "absolute symlink swapped under later entry",
            tar_of(("a", SYM, "/etc"), ("a/passwd", REG, b"root::0:0::/:/bin/sh")),
            None,
            ("etc/passwd",),
        ),
        Case(
            "symlink to host root then nested dirs",
            tar_of(("r", SYM, "/"), ("r/tmp/x/pwned", REG, b"x")),
            None,
            ("tmp/x/pwned",),
        ),
        Case(
            "relative symlink chain escape",
            tar_of(("a", DIR, None), ("a/l", SYM, "../../.."), ("a/l/pwned", REG, b"x")),
            None,
            ("pwned",),
        ),
        Case(
            "directory replaced by symlink",
            tar_of(("d", DIR, None), ("d", SYM, "/"), ("d/pwned", REG, b"x")),
            None,
            ("pwned",),
        ),
        Case("hardlink to /etc/passwd", tar_of(("pw", LNK, "/etc/passwd")), "not in"),
        Case("hardlink to ../x", tar_of(("x", LNK, "../x")), "outside the layer root"),
        Case("hardlink to missing", tar_of(("x", LNK, "nope")), "not in"),
        Case(
            "hardlink through symlink",
            tar_of(("l", SYM, "/etc"), ("h", LNK, "l/passwd")),
            "not in",
        ),
        Case(
            "device node replacing a file",
            tar_of(("f", REG, b"x"), ("f", CHR, None, {"devmajor": 1, "devminor": 3})),
            None,
        ),
        Case(
            "fifo replacing a file then write",
            tar_of(("f", FIFO, None), ("f", REG, b"data")),
            None,
            ("f",),
        ),
        Case("truncated archive", tar_of(("a", REG, b"x" * 5000))[:2000], "truncated"),
        Case(
            "truncated inside header",
            tar_of(("a", REG, b"x"), ("b", REG, b"y"))[:1300],
            "truncated",
        ),
        Case("size field lies", _size_lies(), "truncated"),
        Case("bad header checksum", _bad_checksum(), "bad tar header"),
        Case("bad first header", _bad_first_checksum(), "malformed"),
        Case("garbage", b"this is not a tar archive at all" * 40, "malformed"),
        Case("gzip with corrupted trailer", _gzip_bad_trailer(), "corrupt"),
        Case(
            "gzip truncated",
            gzip.compress(tar_of(("a", REG, b"q" * 100000)), mtime=0)[:-30],
            "truncated",
        ),
        Case("gzip bomb", _gzip_bomb(), "decompresses beyond"),
        Case("zstd bomb", _zstd_bomb(), "decompresses beyond"),
        Case(
            "zstd truncated",
            zstandard.ZstdCompressor().compress(tar_of(("a", REG, bytes(range(256)) * 400)))[:-50],
            "truncated",
        ),
        Case("whiteout of dotdot", tar_of((".wh...", REG, b"")), "invalid whiteout"),
        Case("whiteout of dot", tar_of(("a/.wh..", REG, b"")), "invalid whiteout"),
        Case("whiteout escaping", tar_of(("../.wh.sentinel", REG, b"")), "outside the layer root"),
        Case(
            "whiteout through symlink",
            tar_of(("l", SYM, "/"), ("l/.wh.x", REG, b"")),
            None,
        ),
        Case("opaque escaping", tar_of(("../x/.wh..wh..opq", REG, b"")), "outside the layer root"),
        Case("huge pax header", _huge_pax(), "extended header"),
        Case("NUL in pax name", _nul_in_pax_name(), "NUL"),
        Case(
            "NUL in symlink target",
            tar_of(("l", SYM, "a\x00b")),
            None,
        ),
        Case("gnu longname escape", _gnu_longname_escape(), "outside the layer root"),
        Case("unsupported type", _unsupported_type(), "unsupported tar type"),
        Case("trailing junk after end", tar_of(("a", REG, b"x")) + b"junk" * 200, None, ("a",)),
        Case(
            "file over directory with contents",
            tar_of(("d/x", REG, b"1"), ("d", REG, b"2")),
            None,
            ("d",),
        ),
    ]


__all__ = ["Case", "build_corpus", "tar_of"]
