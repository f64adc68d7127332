"""A COPY/ADD whose files nothing later reads writes its layer straight from the context
(kiln.build.copy_direct): the layer must be the one the materialising path (files copied
into the overlay upper, then tarred) gives, byte for byte, and the image must work like any
other (cache hits, a next build FROM it, kiln run unpacking it on demand).

Each case builds twice on the same store with --no-cache: once as users get it, once with
the direct path switched off (``BuildOptions.direct_copy=False``), and compares every layer. Layers
whose directories take the time of the copy as their mtime (an image's directory the copy
creates a name in, a parent it makes) are compared header by header with those mtimes
within a few seconds, and once more with --timestamp, exactly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

MTIME = 1_600_000_000


def _tree(root: str) -> None:
    """A context with most kinds of thing a COPY meets."""

    def put(rel: str, data: bytes = b"x", mode: int = 0o644) -> str:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    put("a.txt", b"alpha\n")
    put("b.txt", b"beta\n", 0o600)
    put("tool.sh", b"#!/bin/sh\necho hi\n", 0o755)
    put("app.log", b"noise\n")
    put("files/top.txt", b"top\n")
    put("files/sub/deep/x.bin", os.urandom(200_000))  # past the writer's small-file size
    put("files/sub/setuid", b"s", 0o4755)
    put("files/sub/empty", b"")
    put("files/" + "n" * 120, b"long name\n")  # a pax header
    put("files/caf\u00e9.txt", b"accent\n")
    put("files/skip.log", b"log\n")
    os.makedirs(os.path.join(root, "files/emptydir"), mode=0o750)
    os.chmod(os.path.join(root, "files/emptydir"), 0o750)
    # hard links whose copier order ("a.txt" before "a/") differs from tar order
    first = put("files/links/a/inner", b"linked\n")
    os.link(first, os.path.join(root, "files/links/a.txt"))
    os.link(first, os.path.join(root, "files/links/z"))
    os.symlink("top.txt", os.path.join(root, "files/rel-link"))
    os.symlink("/etc/passwd", os.path.join(root, "files/abs-link"))
    os.symlink("../../nowhere", os.path.join(root, "files/dangling"))
    os.mkfifo(os.path.join(root, "files/fifo"), 0o640)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(root, "files/sock"))  # skipped by both paths
    sock.close()
    os.symlink("files", os.path.join(root, "dirlink"))
    with open(os.path.join(root, ".dockerignore"), "w") as f:
        f.write("*.log\n**/*.log\nContainerfile\n")  # written anew by each build
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))


CASES = {
    "dir": ("COPY files /files", True),
    "dir-slash": ("COPY files/ /files/", True),
    "file-new-parents": ("COPY a.txt /new/dir/", True),
    "file-existing-dir": ("COPY a.txt /etc/", True),
    "file-under-existing": ("COPY b.txt /etc/sub/deep/b", True),
    "chown-chmod": ("COPY --chown=1000:1001 --chmod=640 files /files", True),
    "chmod-symbolic": ("COPY --chmod=u+x,g-w files /files", True),
    "chown-name": ("COPY --chown=root:root files /files", True),
    "glob": ("COPY *.txt /texts/", True),
    "context-ignore": ("COPY . /app", True),
    "exclude": ("COPY --exclude=*.bin files /files", True),
    "add-dir": ("ADD files /added", True),
    "add-file": ("ADD --chmod=755 a.txt /bin/a", True),
    "link-flag": ("COPY --link files /files", True),
    "to-root": ("COPY a.txt b.txt /", True),
    "dir-into-root": ("COPY files/ /", True),
    "dir-into-existing": ("COPY files /etc", True),
    "symlink-source": ("COPY dirlink /viadirlink", True),
    # two directory sources merged into the image's directory: their entries interleave
    # in layer order ("deep/", "links/a.txt", "links/a/") though each is walked alone
    "dirs-merged-into-existing": ("COPY files/sub files/links /etc/", True),
    "dirs-merged-into-new": ("COPY files/sub files/links /merged/", False),
    "meta-around": ('ENV A=1\nCOPY files /files\nLABEL x=y\nCMD ["/bin/true"]', True),
    "after-run": ("RUN echo hi > /run.txt\nCOPY tool.sh /usr/local/bin/", True),
    "workdir-first": ("WORKDIR /app\nCOPY . .", True),
    # a run of COPYs: each layer written straight, the later ones planned below the first
    "run-of-copies": ("COPY a.txt /app/\nENV A=1\nCOPY files /app/files\nCOPY tool.sh /app/", True),
    "workdir-volume-user": (
        "VOLUME /data\nUSER 1000:1000\nWORKDIR /srv/www\nCOPY --chown=1000 a.txt ./",
        True,
    ),
    # the materialising path, whatever the switch: the layers must still agree
    "dest-through-symlink": ("COPY a.txt /bin/sh", False),
    "read-later": ("COPY a.txt /a\nRUN cat /a", False),
    "parents": ("COPY --parents files/sub/deep /p/", False),
}
#: cases whose layers hold a directory with the copy's time as its mtime (--parents: the
#: directories of each path it keeps)
NOW_DIRS = {"file-new-parents", "file-existing-dir", "file-under-existing", "glob",
            "to-root", "dir-into-root", "add-file", "after-run", "dir-into-existing",
            "workdir-first", "workdir-volume-user", "run-of-copies", "dest-through-symlink",
            "dirs-merged-into-existing", "dirs-merged-into-new", "parents"}  # fmt: skip


def _headers(img) -> list[list[tuple]]:
    """Each layer's members: (name, type, mode, uid, gid, mtime, size, link, sha256)."""
    out = []
    for desc in img.layers:
        with img.open_layer(desc) as raw:
            data = gzip.decompress(raw.read())
        members = []
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar:
                body = tar.extractfile(m).read() if m.isfile() else b""
                members.append((m.name, m.type, m.mode, m.uid, m.gid, m.mtime, m.size,
                                m.linkname, dict(m.pax_headers),
                                hashlib.sha256(body).hexdigest()))  # fmt: skip
        out.append(members)
    return out


def _build(env, ctx, text, direct: bool, **opts):
    result = env.build(ctx, "FROM busybox\n" + text + "\n", no_cache=True, direct_copy=direct,
                       **opts)  # fmt: skip
    return env.validate(result.image_id)


def _unpacked(env, img) -> bool:
    snaps = env.ctx.snapshots
    return snaps.has_layer(img.record.layers[-1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_direct_layer_is_the_materialised_one(build_env, case):  # noqa: F811
    text, direct_expected = CASES[case]
    ctx = build_env.context_dir()
    _tree(ctx)
    new = _build(build_env, ctx, text, direct=True)
    # the direct path was taken where it should be: its layer is not unpacked (first:
    # the other build's identical layer has the same chain and is unpacked)
    assert _unpacked(build_env, new) is not direct_expected
    old = _build(build_env, ctx, text, direct=False)
    old_h, new_h = _headers(old), _headers(new)
    if case not in NOW_DIRS:
        assert new_h == old_h
        assert [d.digest for d in new.layers] == [d.digest for d in old.layers]
        assert new.config.diff_ids == old.config.diff_ids
    else:
        assert len(new_h) == len(old_h)
        # the step's own layer (a RUN's before it writes files of its time)
        for o_layer, n_layer in [(old_h[-1], new_h[-1])]:
            assert [m[:5] + m[6:] for m in n_layer] == [m[:5] + m[6:] for m in o_layer]
            for o, n in zip(o_layer, n_layer, strict=True):
                if o[5] != n[5]:  # only a directory of the copy's time may differ
                    assert o[1] == tarfile.DIRTYPE and abs(o[5] - n[5]) <= 5, (o, n)
        ts = {"timestamp": MTIME}
        old_ts = _build(build_env, ctx, text, direct=False, **ts)
        new_ts = _build(build_env, ctx, text, direct=True, **ts)
        assert [d.digest for d in new_ts.layers] == [d.digest for d in old_ts.layers]
    # the history names the same content digest (the copy's summary)
    assert [h.created_by for h in new.config.history] == [h.created_by for h in old.config.history]
