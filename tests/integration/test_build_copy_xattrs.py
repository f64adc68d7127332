"""COPY keeps the extended attributes a layer carries, as buildah 1.28 does: a ``setcap``
binary's ``security.capability`` and ``user.*`` on files and on directories below the
copied top, from the context (written straight to the layer or copied into the overlay
upper first) and from another stage (``COPY --from``). ``trusted.*`` stays out, as in
buildah and BuildKit. The layers of both COPY paths are the same, byte for byte.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

#: ``setcap cap_net_bind_service+ep`` (VFS_CAP_REVISION_2, permitted bit 10, effective)
CAP_NET_BIND = b"\x01\x00\x00\x02\x00\x04\x00\x00" + bytes(12)
XATTR = "SCHILY.xattr."


def _context(build_env) -> str:  # noqa: F811
    ctx = build_env.context_dir()
    files = {"bin/server": b"#!/bin/sh\n", "bin/plain": b"plain\n", "notes": b"n\n",
             "secret": b"s\n", "tree/sub/f": b"f\n"}  # fmt: skip
    for rel, data in files.items():
        os.makedirs(os.path.join(ctx, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(ctx, rel), "wb") as f:
            f.write(data)
    try:
        os.setxattr(os.path.join(ctx, "notes"), "user.origin", b"ctx")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("the file system under the test's tmp dir has no user.* xattrs")
        raise
    os.setxattr(os.path.join(ctx, "bin/server"), "security.capability", CAP_NET_BIND)
    os.setxattr(os.path.join(ctx, "secret"), "trusted.kiln-test", b"t")
    os.setxattr(os.path.join(ctx, "tree/sub"), "user.dir", b"d")
    os.setxattr(os.path.join(ctx, "tree"), "user.top", b"not copied: the top's contents are")
    return ctx


def _xattrs(img, first: int = 1) -> dict[str, dict[str, bytes]]:
    """name -> its SCHILY.xattr records, over the image's layers from ``first`` (above
    busybox)."""
    out: dict[str, dict[str, bytes]] = {}
    for desc in img.layers[first:]:
        with img.open_layer(desc) as raw:
            data = gzip.decompress(raw.read())
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar:
                out[m.name] = {
                    k[len(XATTR) :]: v.encode("utf-8", "surrogateescape")
                    for k, v in m.pax_headers.items()
                    if k.startswith(XATTR)
                }
    return out


EXPECTED = {
    "bin/server": {"security.capability": CAP_NET_BIND},
    "bin/plain": {},
    "notes": {"user.origin": b"ctx"},
    "secret": {},
    "tree": {},
    "tree/sub": {"user.dir": b"d"},
    "tree/sub/f": {},
}

CASES = {
    # the stage's last step: written straight from the context (copy_direct)
    "direct": "FROM busybox\nCOPY bin /c/bin/\nCOPY notes secret /c/\nCOPY tree /c/tree\n",
    # read later: copied into the overlay upper, then tarred
    "materialised": "FROM busybox\nCOPY bin /c/bin/\nCOPY notes secret /c/\n"
    "COPY tree /c/tree\nRUN true\n",
    "from-stage": "FROM busybox AS s\nCOPY . /s/\nFROM busybox\nCOPY --from=s /s/bin /c/bin/\n"
    "COPY --from=s /s/notes /s/secret /c/\nCOPY --from=s /s/tree /c/tree\n",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_copy_keeps_capabilities_and_user_xattrs(build_env, case):  # noqa: F811
    ctx = _context(build_env)
    img = build_env.validate(build_env.build(ctx, CASES[case], no_cache=True).image_id)
    got = _xattrs(img)
    assert {k: got.get(f"c/{k}") for k in EXPECTED} == EXPECTED


def test_both_copy_paths_give_one_layer(build_env):  # noqa: F811
    ctx = _context(build_env)
    text = "FROM busybox\nCOPY . /c/\n"
    # --timestamp: /c takes the context's mtime, which each build's Containerfile changes
    opts = {"no_cache": True, "timestamp": 1_600_000_000}
    direct = build_env.validate(build_env.build(ctx, text, **opts).image_id)
    assert not build_env.ctx.snapshots.has_layer(direct.record.layers[-1])  # the direct path
    copied = build_env.validate(build_env.build(ctx, text, direct_copy=False, **opts).image_id)
    assert _xattrs(direct)["c/bin/server"] == {"security.capability": CAP_NET_BIND}
    assert [d.digest for d in direct.layers] == [d.digest for d in copied.layers]
    assert direct.config.history[-1].created_by == copied.config.history[-1].created_by


def test_a_new_capability_is_a_new_copy(build_env):  # noqa: F811
    """A capability set or taken off (the bytes unchanged) misses the cache: the step's key
    and the copy's content digest (in the history) cover the xattrs a copy keeps."""
    ctx = _context(build_env)
    text = "FROM busybox\nCOPY bin /c/bin/\nCOPY tree /c/tree\n"
    first = build_env.validate(build_env.build(ctx, text).image_id)
    os.removexattr(os.path.join(ctx, "bin/server"), "security.capability")
    os.setxattr(os.path.join(ctx, "tree/sub/f"), "user.new", b"n")
    second = build_env.validate(build_env.build(ctx, text).image_id)
    assert [h.created_by for h in first.config.history[-2:]] != [
        h.created_by for h in second.config.history[-2:]
    ]
    got = _xattrs(second)
    assert got["c/bin/server"] == {}
    assert got["c/tree/sub/f"] == {"user.new": b"n"}
    os.setxattr(os.path.join(ctx, "bin/server"), "security.capability", CAP_NET_BIND)
    third = build_env.validate(build_env.build(ctx, text).image_id)
    assert _xattrs(third)["c/bin/server"] == {"security.capability": CAP_NET_BIND}


def test_run_layer_keeps_what_it_copies_up(build_env):  # noqa: F811
    """A RUN that changes a file of a lower layer: overlayfs copies it up with its xattrs,
    and its layer carries them (never overlayfs' own trusted.overlay.*)."""
    ctx = _context(build_env)
    text = ("FROM busybox\nCOPY bin notes /c/\n"
            "RUN touch /c/server /c/notes && mv /c/plain /c/moved && mkdir /c/new\n")  # fmt: skip
    img = build_env.validate(build_env.build(ctx, text, no_cache=True).image_id)
    run_layer = _xattrs(img, first=-1)
    assert run_layer["c/server"] == {"security.capability": CAP_NET_BIND}
    assert run_layer["c/notes"] == {"user.origin": b"ctx"}
    assert not any(n.startswith("trusted.") for x in run_layer.values() for n in x), run_layer
