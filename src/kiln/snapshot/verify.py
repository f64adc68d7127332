"""Does an unpacked layer directory still hold what its layer tar says?

An unpacked layer cannot be re-tarred into its diff ID (the tar's bytes depend on the tool
that wrote it: order, headers, padding), so the check goes the other way: the layer's tar
is streamed once (its sha256 is compared with the diff ID) and every entry is compared
with the directory, and the directory has nothing the tar lacks. Compared per path: the
type; permission bits, owner and group (not of symlinks); a regular file's size and the
sha256 of its content; a symlink's target; a device's numbers; whiteouts (0/0 character
devices) and opaque directories (the overlay xattr). Hard links compare as the file they
name. Times and other xattrs are not compared. Directories the applier made as parents of
an entry, without an entry of their own, are expected. Memory grows with the number of
entries, never with file sizes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import NamedTuple

from kiln.archive.changes import is_opaque, is_whiteout
from kiln.archive.entry import clean_path
from kiln.archive.streams import ByteReader
from kiln.errors import InvalidArgument

__all__ = ["LayerVerdict", "verify_layer_dir"]

_CHUNK = 1 << 20
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
#: at most this many differences are listed (a wholly wrong directory says so in a few lines)
MAX_PROBLEMS = 20

# one path's facts: (type, mode, uid, gid, size, content or link target or device, ...)
_Facts = tuple[object, ...]


class LayerVerdict(NamedTuple):
    diff_id: str  # sha256 of the tar stream read
    problems: list[str]  # empty: the directory matches


class _Hashing:
    """Reads a stream on for tarfile and hashes every byte it hands out."""

    def __init__(self, stream: ByteReader):
        self._stream = stream
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.hash.update(data)
        return data


def verify_layer_dir(fs: str, tar_stream: ByteReader) -> LayerVerdict:
    """Compare the unpacked layer directory ``fs`` with the (uncompressed) layer tar."""
    hashing = _Hashing(tar_stream)
    expected, parents = _tar_facts(hashing)
    while hashing.read(_CHUNK):  # trailing blocks count towards the diff ID
        pass
    diff_id = "sha256:" + hashing.hash.hexdigest()
    problems: list[str] = []
    seen: set[str] = set()
    for rel, facts in _dir_facts(fs, expected):
        seen.add(rel)
        want = expected.get(rel)
        if want is None:
            if rel in parents and facts[0] == "dir":
                continue
            problems.append(f"/{rel}: not in the layer ({facts[0]})")
        elif want != facts and not _same_hardlink(want, facts):
            problems.append(f"/{rel}: {_difference(want, facts)}")
        if len(problems) >= MAX_PROBLEMS:
            return LayerVerdict(diff_id, problems + ["(more differences not listed)"])
    for rel in sorted(set(expected) - seen):
        problems.append(f"/{rel}: missing ({expected[rel][0]})")
        if len(problems) >= MAX_PROBLEMS:
            return LayerVerdict(diff_id, problems + ["(more differences not listed)"])
    return LayerVerdict(diff_id, problems)


def _tar_facts(stream: _Hashing) -> tuple[dict[str, _Facts], set[str]]:
    facts: dict[str, _Facts] = {}
    parents: set[str] = set()
    opaque: set[str] = set()
    try:
        # typeshed has no overload for a stream mode over a plain reader; tarfile takes it
        tar = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
    except tarfile.TarError as exc:
        raise InvalidArgument(f"the layer is not a readable tar: {exc}") from None
    with tar:
        for member in tar:
            try:
                path = clean_path(member.name)
            except InvalidArgument:
                continue  # the applier refused it too: nothing of it on disk
            if not path:
                continue
            head, _, base = path.rpartition("/")
            for i, ch in enumerate(path):
                if ch == "/":
                    parents.add(path[:i])
            if base == _OPAQUE:
                opaque.add(head)
                continue
            if base.startswith(_WHITEOUT):
                name = f"{head}/{base[len(_WHITEOUT) :]}" if head else base[len(_WHITEOUT) :]
                facts[name] = ("whiteout",)
                continue
            facts[path] = _member_facts(tar, member, facts)
    for head in opaque:
        if facts.get(head, ("",))[0] == "dir":
            facts[head] = (*facts[head], "opaque")
    return facts, parents


def _member_facts(tar: tarfile.TarFile, m: tarfile.TarInfo, known: dict[str, _Facts]) -> _Facts:
    mode = m.mode & 0o7777
    if m.isreg():
        f = tar.extractfile(m)
        digest = hashlib.sha256()
        if f is not None:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return ("file", mode, m.uid, m.gid, m.size, digest.hexdigest())
    if m.isdir():
        return ("dir", mode, m.uid, m.gid)
    if m.issym():
        return ("symlink", m.linkname)
    if m.islnk():
        try:
            target = known.get(clean_path(m.linkname))
        except InvalidArgument:
            target = None
        return target if target is not None else ("hardlink", m.linkname)
    if m.ischr() or m.isblk():
        return ("char" if m.ischr() else "block", mode, m.uid, m.gid, m.devmajor, m.devminor)
    if m.isfifo():
        return ("fifo", mode, m.uid, m.gid)
    return ("other",)


def _dir_facts(fs: str, expected: dict[str, _Facts]) -> Iterator[tuple[str, _Facts]]:
    """(relative path, facts) of everything under ``fs``; a file's content is hashed only
    when the tar has a regular file of that size there (anything else differs anyway)."""
    todo = [""]
    while todo:
        rel_dir = todo.pop()
        with os.scandir(os.path.join(fs, rel_dir)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                todo.append(rel)
                facts: _Facts = ("dir", mode, st.st_uid, st.st_gid)
                yield rel, ((*facts, "opaque") if is_opaque(entry.path) else facts)
            elif stat.S_ISREG(st.st_mode):
                want = expected.get(rel)
                content = ""
                if want is not None and want[0] == "file" and want[4] == st.st_size:
                    content = _sha256(entry.path)
                yield rel, ("file", mode, st.st_uid, st.st_gid, st.st_size, content)
            elif stat.S_ISLNK(st.st_mode):
                yield rel, ("symlink", os.readlink(entry.path))
            elif is_whiteout(st):
                yield rel, ("whiteout",)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
                major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
                yield rel, (kind, mode, st.st_uid, st.st_gid, major, minor)
            elif stat.S_ISFIFO(st.st_mode):
                yield rel, ("fifo", mode, st.st_uid, st.st_gid)
            else:
                yield rel, ("other",)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _same_hardlink(want: _Facts, facts: _Facts) -> bool:
    """A hard link to a file of a lower layer: any regular file will do."""
    return want[0] == "hardlink" and facts[0] == "file"


def _difference(want: _Facts, got: _Facts) -> str:
    if want[0] != got[0]:
        return f"is a {got[0]}, the layer has a {want[0]}"
    kind = want[0]
    if kind == "file":
        if want[4] != got[4]:
            return f"size {got[4]}, the layer has {want[4]}"
        if want[5] != got[5]:
            return "content differs from the layer"
    if kind == "symlink":
        return f"points to {got[1]!r}, the layer has {want[1]!r}"
    if kind == "dir" and ("opaque" in want) != ("opaque" in got):
        return "opaque marker differs from the layer"
    if len(want) > 3 and len(got) > 3 and want[1:4] != got[1:4]:
        w, g = want[1:4], got[1:4]
        return f"mode/owner {g[0]:o} {g[1]}:{g[2]}, the layer has {w[0]:o} {w[1]}:{w[2]}"
    return "differs from the layer"
