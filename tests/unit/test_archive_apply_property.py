"""Property: however a layer's entries are named and linked, applying it never writes, links
or deletes outside the target root, and a link-free layer gives exactly what a model says.

Random layers of files, directories, symlinks (relative, absolute, ``..``-laden, to a victim
directory beside the root), hard links (to names inside and outside), whiteouts and opaque
markers, with names that are absolute or climb with ``..``, are applied over a lower tree that
holds links to the victim. The victim's listing, contents, times and link counts must not
change, and nothing in the root may share an inode with a victim file; the apply either
succeeds or raises kiln's InvalidArgument. Layers without links are also applied with the
"delete" whiteout mode (a full tree) and compared with a model of Docker's rules.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
import tempfile

from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from kiln.archive.applier import apply_layer
from kiln.errors import InvalidArgument

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
IS_ROOT = os.geteuid() == 0
CANARY = b"victim canary"

component = st.sampled_from(["a", "b", "..", ".", "evil", "abs"])
rel_name = st.lists(component, min_size=1, max_size=3).map("/".join)
name = st.one_of(rel_name, rel_name.map(lambda n: "/" + n), rel_name.map(lambda n: "./" + n))
whiteout = st.tuples(
    st.lists(st.sampled_from(["a", "b", "evil", "abs", ".."]), max_size=2).map("/".join),
    st.sampled_from([".wh.a", ".wh.b", ".wh.canary", ".wh..wh..opq", ".wh.", ".wh..wh.plnk"]),
).map(lambda t: f"{t[0]}/{t[1]}" if t[0] else t[1])
link_target = st.one_of(
    rel_name,
    rel_name.map(lambda n: "/" + n),
    st.just("{victim}"),
    st.just("{victim}/canary"),
    st.just("../victim/canary"),
    st.just("../../victim"),
)
entry = st.one_of(
    st.tuples(st.just("file"), name, st.binary(max_size=16)),
    st.tuples(st.just("dir"), name, st.just(b"")),
    st.tuples(st.just("symlink"), name, link_target),
    st.tuples(st.just("hardlink"), name, link_target),
    st.tuples(st.just("file"), whiteout, st.just(b"")),
)
layer = st.lists(entry, min_size=1, max_size=10)


def _tar(entries: list[tuple[str, str, object]], victim: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, entry_name, extra in entries:
            info = tarfile.TarInfo(entry_name)
            info.mtime = 1_000_000
            if kind == "file":
                data = extra if isinstance(extra, bytes) else b""
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = str(extra).replace("{victim}", victim)
            tf.addfile(info)
    return buf.getvalue()


def _snapshot(path: str) -> dict[str, tuple]:
    """Every entry below ``path``: kind, contents, mode, mtime, link count, inode."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(path):
        for entry_name in dirs + files:
            full = os.path.join(dirpath, entry_name)
            st_ = os.lstat(full)
            data = b""
            if stat.S_ISREG(st_.st_mode):
                with open(full, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st_.st_mode):
                data = os.readlink(full).encode()
            rel = os.path.relpath(full, path)
            out[rel] = (stat.S_IFMT(st_.st_mode), data, st_.st_mode, st_.st_mtime_ns,
                        st_.st_nlink, st_.st_ino)  # fmt: skip
    return out


def _world(base: str) -> tuple[str, str]:
    """``root`` (a lower tree with links to the victim) beside ``victim`` (canaries)."""
    victim = os.path.join(base, "victim")
    os.makedirs(os.path.join(victim, "a"))
    for rel in ("canary", "a/canary", "b"):
        with open(os.path.join(victim, rel), "wb") as f:
            f.write(CANARY + rel.encode())
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "a", "b"))
    with open(os.path.join(root, "a", "f"), "wb") as f:
        f.write(b"lower")
    os.symlink("../victim", os.path.join(root, "evil"))  # relative, leaves the root
    os.symlink(victim, os.path.join(root, "abs"))  # absolute host path
    os.symlink("/", os.path.join(root, "a", "up"))
    return root, victim


def _apply(root: str, raw: bytes, mode: str) -> bool:
    try:
        apply_layer(io.BytesIO(raw), root, whiteouts=mode)
    except InvalidArgument:
        return False
    return True


@SETTINGS
@given(entries=layer, mode=st.sampled_from(["overlay", "delete", "none"]))
@example(entries=[("file", "evil/canary", b"x")], mode="delete")
@example(entries=[("file", "abs/.wh.canary", b"")], mode="delete")
@example(entries=[("file", "evil/.wh..wh..opq", b""), ("dir", "evil", b"")], mode="delete")
@example(entries=[("hardlink", "h", "{victim}/canary")], mode="delete")
@example(entries=[("hardlink", "h", "abs/canary")], mode="none")
@example(entries=[("symlink", "a", "{victim}"), ("file", "a/canary", b"x")], mode="none")
@example(entries=[("file", "../victim/canary", b"x")], mode="none")
@example(entries=[("file", "a/up/tmp/x", b"x")], mode="none")
def test_apply_never_touches_anything_outside_the_root(entries, mode):
    if mode == "overlay" and not IS_ROOT:
        mode = "delete"  # whiteout devices need root
    with tempfile.TemporaryDirectory(prefix="kiln-prop-apply-") as base:
        root, victim = _world(base)
        before = _snapshot(victim)
        _apply(root, _tar(entries, victim), mode)
        assert _snapshot(victim) == before
        victim_inodes = {v[5] for v in before.values() if v[0] == stat.S_IFREG}
        inside = _snapshot(root)
        assert not {v[5] for v in inside.values() if v[0] == stat.S_IFREG} & victim_inodes
        assert sorted(os.listdir(base)) == ["root", "victim"]  # nothing made beside them


# ---- a model of a link-free layer over a full tree ("delete" whiteouts) ----------------

plain_name = st.lists(st.sampled_from(["a", "b", "c", "..", "."]), min_size=1, max_size=3).map(
    "/".join
)
plain_entry = st.one_of(
    st.tuples(
        st.just("file"),
        st.one_of(plain_name, plain_name.map(lambda n: "/" + n)),
        st.binary(max_size=8),
    ),  # fmt: skip
    st.tuples(st.just("dir"), plain_name, st.just(b"")),
    st.tuples(
        st.just("file"),
        st.tuples(
            st.sampled_from(["", "a", "b", "a/b"]),
            st.sampled_from([".wh.a", ".wh.b", ".wh.c", ".wh..wh..opq"]),
        ).map(lambda t: f"{t[0]}/{t[1]}" if t[0] else t[1]),
        st.just(b""),
    ),  # fmt: skip
)


class _Refused(Exception):
    pass


def _clean(entry_name: str) -> str:
    """kiln's (and Docker's) entry name rule: leading ``/`` dropped, ``..`` above the root
    refused, the rest cleaned lexically."""
    depth = 0
    for part in entry_name.lstrip("/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise _Refused(entry_name)
        elif part not in ("", "."):
            depth += 1
    cleaned = posixpath.normpath(entry_name.lstrip("/") or ".")
    return "" if cleaned == "." else cleaned


def _model(lower: dict[str, bytes | None], entries) -> dict[str, bytes | None]:
    """The tree (path -> file bytes, or None for a directory) after the layer."""
    tree = dict(lower)
    written: set[str] = set()
    opaque: list[str] = []

    def drop(path: str) -> None:
        for key in [k for k in tree if k == path or k.startswith(path + "/")]:
            del tree[key]

    def parents_ok(path: str, make: bool) -> bool:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent in tree and tree[parent] is not None:
                return False
            if make:
                tree.setdefault(parent, None)
        return True

    def clear(directory: str) -> None:
        prefix = directory + "/" if directory else ""
        children = {
            k[len(prefix) :].split("/")[0] for k in tree if k.startswith(prefix) and k != directory
        }
        for child in children:
            full = prefix + child
            if full not in written:
                drop(full)
            elif tree.get(full, b"") is None:
                clear(full)

    for kind, entry_name, data in entries:
        path = _clean(entry_name)
        base = path.rpartition("/")[2]
        if base.startswith(".wh."):
            parent = path.rpartition("/")[0]
            if base == ".wh..wh..opq":
                if parent and not parents_ok(path, make=True):
                    raise _Refused(entry_name)
                if parent:
                    if parent in tree and tree[parent] is not None:
                        raise _Refused(entry_name)
                    tree.setdefault(parent, None)
                opaque.append(parent)
                clear(parent)  # now, and again at the end (later entries are spared)
                continue
            victim = posixpath.join(parent, base[4:]) if parent else base[4:]
            if victim not in written:
                drop(victim)
            continue
        if not path:
            continue
        if not parents_ok(path, make=True):
            raise _Refused(entry_name)
        if kind == "file":
            drop(path)
            tree[path] = data
        else:
            if path in tree and tree[path] is not None:
                del tree[path]
            tree.setdefault(path, None)
        written.add(path)

    for directory in opaque:
        if not directory or tree.get(directory, b"") is None:
            clear(directory)
    return tree


def _read_tree(root: str) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for rel, (kind, data, *_rest) in _snapshot(root).items():
        out[rel] = None if kind == stat.S_IFDIR else data
    return out


LOWER: dict[str, bytes | None] = {"a": None, "a/b": None, "a/b/f": b"lower", "c": b"lower c"}


@SETTINGS
@given(entries=st.lists(plain_entry, min_size=1, max_size=8))
@example(entries=[("file", ".wh..wh..opq", b""), ("file", "a/new", b"n")])
@example(entries=[("file", "a/b/.wh..wh..opq", b""), ("file", "a/b/g", b"g")])
@example(entries=[("file", "a", b"file over dir")])
@example(entries=[("file", "c/x", b"under a file")])
@example(entries=[("file", "/a/../c", b"abs")])
@example(entries=[("file", "a/.wh..wh..opq", b""), ("file", "a", b"now a file")])
@example(entries=[("file", "a/.wh..wh..opq", b""), ("file", ".wh.a", b"")])
def test_a_link_free_layer_gives_what_the_model_says(entries):
    note(repr(entries))
    try:
        expected: dict[str, bytes | None] | None = _model(LOWER, entries)
    except _Refused:
        expected = None
    with tempfile.TemporaryDirectory(prefix="kiln-prop-model-") as base:
        root = os.path.join(base, "root")
        for rel, data in sorted(LOWER.items()):
            path = os.path.join(root, rel)
            if data is None:
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
        ok = _apply(root, _tar(entries, ""), "delete")
        if expected is None:
            assert not ok, "the model refuses this layer, kiln applied it"
        else:
            assert ok, "kiln refused a layer the model applies"
            assert _read_tree(root) == expected


def test_an_opaque_directory_replaced_later_in_the_layer_is_not_an_os_error(tmp_path):
    """Found by the model test: an opaque marker for ``a/`` followed, in the same layer, by
    ``a`` as a file (or a whiteout of ``a``) made the "delete" apply list a directory that
    was gone: a raw FileNotFoundError/NotADirectoryError ("unexpected OSError")."""
    for later in (("file", "a", b"file"), ("file", ".wh.a", b"")):
        root = tmp_path / later[1]
        (root / "a" / "b").mkdir(parents=True)
        raw = _tar([("file", "a/.wh..wh..opq", b""), later], "")
        assert _apply(str(root), raw, "delete")
        assert _read_tree(str(root)) == ({"a": b"file"} if later[1] == "a" else {})
