"""Files whose digest the caller already knows are copied in the kernel, not hashed again:
the copy and its digest are the same as when the copier hashes them itself, and a digest
given for another stat (the file changed since it was hashed) is not used."""

from __future__ import annotations

import os

from kiln.build.context import BuildContext
from kiln.container.copy_add import copy_into


def _tree(ctx):
    (ctx / "d" / "e").mkdir(parents=True)
    (ctx / "d" / "a").write_bytes(b"a" * 5000)
    (ctx / "d" / "e" / "b").write_bytes(os.urandom(3 << 20))  # several chunks
    (ctx / "d" / "empty").write_bytes(b"")
    os.chmod(ctx / "d" / "a", 0o640)
    os.symlink("a", ctx / "d" / "l")


def _copy(ctx, rootfs, known=None):
    rootfs.mkdir()
    return copy_into(str(rootfs), ["d"], "/dst/", context_dir=str(ctx), known_digest=known)


def _snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = os.readlink(p) if os.path.islink(p) else None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_mtime_ns, data)
    return out


def test_known_digests_give_the_same_copy_and_digest(tmp_path):
    ctx = tmp_path / "ctx"
    _tree(ctx)
    plain = _copy(ctx, tmp_path / "r1")
    asked = []

    with BuildContext(str(ctx)) as context:
        context.racy_ns = 0  # files made just now: trust their checksums all the same
        context.digest(["d"])  # hashes every file, as a build's cache key does

        def known(st, label):
            asked.append(st.st_ino)
            found = context.known_digest(st, label)
            assert found is not None, label  # found by the path the copy names
            return found

        fast = _copy(ctx, tmp_path / "r2", known)
    assert fast.digest == plain.digest
    assert _snapshot(tmp_path / "r1") == _snapshot(tmp_path / "r2")
    assert len(asked) == 3  # every regular file was looked up


def test_a_digest_for_another_stat_is_not_used(tmp_path):
    ctx = tmp_path / "ctx"
    _tree(ctx)
    with BuildContext(str(ctx)) as context:
        context.digest(["d"])
        target = ctx / "d" / "a"
        before = os.stat(target)
        target.write_bytes(b"b" * 5000)  # same size; mtime put back: only ctime differs
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert context.known_digest(os.stat(target), "d/a") is None
        out = _copy(ctx, tmp_path / "r", context.known_digest)
    assert (tmp_path / "r" / "dst" / "a").read_bytes() == b"b" * 5000
    plain = _copy(ctx, tmp_path / "r2")  # hashes every file itself
    assert out.digest == plain.digest
