"""``copy_into`` keeps ``security.capability`` and ``user.*`` (as buildah 1.28), also with
--chown (which would drop a capability set before it), never ``trusted.*``; a caller who may
not set a capability goes on without it, with a warning."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile

import pytest

from kiln.container.copy_add import copy_into

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="setting security.* needs root")

#: ``setcap cap_net_bind_service+ep`` (VFS_CAP_REVISION_2)
CAP = b"\x01\x00\x00\x02\x00\x04\x00\x00" + bytes(12)


def _xattrs(path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n) for n in sorted(os.listxattr(path))}


@pytest.fixture
def ctx(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "tree" / "server").write_bytes(b"#!/bin/sh\n")
    (ctx / "tree" / "sub" / "f").write_text("f\n")
    try:
        os.setxattr(ctx / "tree" / "sub", "user.dir", b"d")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("the file system under the test's tmp dir has no user.* xattrs")
        raise
    os.setxattr(ctx / "tree" / "server", "security.capability", CAP)
    os.setxattr(ctx / "tree" / "sub" / "f", "user.origin", b"ctx")
    os.setxattr(ctx / "tree" / "sub" / "f", "trusted.kiln-test", b"t")
    os.setxattr(ctx / "tree", "user.top", b"t")
    return ctx


@pytest.mark.parametrize("chown", [None, "1000:1000"])
def test_copy_keeps_capability_and_user_xattrs(tmp_path, ctx, chown):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    copy_into(str(rootfs), ["tree"], "/app", context_dir=str(ctx), chown=chown)
    assert _xattrs(rootfs / "app" / "server") == {"security.capability": CAP}
    assert _xattrs(rootfs / "app" / "sub") == {"user.dir": b"d"}
    assert _xattrs(rootfs / "app" / "sub" / "f") == {"user.origin": b"ctx"}
    assert _xattrs(rootfs / "app") == {}  # the top's contents are copied, not the top
    if chown:
        assert os.stat(rootfs / "app" / "server").st_uid == 1000


def test_unprivileged_copy_goes_on_without_the_capability(ctx, caplog):
    """As a plain user (no CAP_SETFCAP) the capability is left out with a warning; the
    copy and the user.* xattrs are made all the same."""
    # the same copy as root first: whatever it imports later is imported before setuid
    with tempfile.TemporaryDirectory() as warm:
        copy_into(warm, ["tree"], "/app", context_dir=str(ctx))
    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o755)
        shared = os.path.join(top, "ctx")
        shutil.copytree(ctx, shared)  # keeps the xattrs, where the plain user can read
        for d, _, names in os.walk(top):
            os.chmod(d, 0o755)
            for n in names:
                os.chmod(os.path.join(d, n), 0o644)
        rootfs = os.path.join(top, "rootfs")
        os.mkdir(rootfs)
        os.chown(rootfs, 65534, 65534)
        out = _as_nobody(lambda: copy_into(rootfs, ["tree"], "/app", context_dir=shared), caplog)
        assert out.startswith("ok"), out
        server = os.path.join(rootfs, "app", "server")
        with open(server, "rb") as f:
            assert f.read() == b"#!/bin/sh\n"
        assert _xattrs(server) == {}
        assert "security.capability not kept" in out and "server" in out
        assert _xattrs(os.path.join(rootfs, "app", "sub", "f")) == {"user.origin": b"ctx"}


def _as_nobody(fn, caplog) -> str:
    """Run ``fn`` in a child as uid/gid 65534; its warnings (or its error) come back."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with caplog.at_level(logging.WARNING, logger="kiln.copy"):
                fn()
            report = "ok\n" + "\n".join(r.getMessage() for r in caplog.records)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            report = f"failed: {exc!r}"
        os.write(write, report.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        report = f.read().decode()
    os.waitpid(pid, 0)
    return report
