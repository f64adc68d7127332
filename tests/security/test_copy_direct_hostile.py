"""A COPY written straight from the context (kiln.build.copy_direct) lists the context
through directory fds, then reads each file by its path: a context changed in between must
not make it read anything else. Swapping a directory on the way for a symlink out of the
context (or to ``/``), a file for a FIFO or for a symlink to a host file, or a file growing,
shrinking or rewritten before or while it is read, fails the step (never a hang, never the
victim's bytes in a layer, nothing published); a symlink in the context stays a symlink.
Each case runs with the layer written after its key and before it (kiln.build.layer_first).
"""

from __future__ import annotations

import os
import shutil
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import InvalidArgument

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(120)]

SECRET = b"victim secret\n"


@pytest.fixture(params=[0, 1], ids=["key-first", "write-first"])
def hostile(build_env, tmp_path, monkeypatch, request):  # noqa: F811
    """(env, ctx, swaps, build): ``build(ctx, dockerfile)`` with the layer written after its key
    or before it (``write_first_at``: every file "big"); each swap runs once, after the
    step's first listing of the context (the one the layer is written from)."""
    import kiln.build.copy_direct as copy_direct

    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_bytes(SECRET)
    ctx = build_env.context_dir(files={"files/sub/f": "mine\n", "files/g": "g\n"})
    os.symlink(str(victim / "sub" / "f"), os.path.join(ctx, "files", "out-link"))
    listed = copy_direct.plan_direct
    swaps = []

    def then_swap(*args, **kw):
        layer = listed(*args, **kw)
        assert layer is not None  # the direct path is taken
        while swaps:
            swaps.pop(0)(ctx, victim)
        return layer

    monkeypatch.setattr(copy_direct, "plan_direct", then_swap)

    def build(context, dockerfile, **opts):
        return build_env.build(context, dockerfile, write_first_at=request.param, **opts)

    return build_env, ctx, swaps, build


def _dir_to_symlink(ctx, victim):
    shutil.rmtree(os.path.join(ctx, "files", "sub"))
    os.symlink(str(victim / "sub"), os.path.join(ctx, "files", "sub"))


def _file_to_fifo(ctx, victim):
    os.unlink(os.path.join(ctx, "files", "g"))
    os.mkfifo(os.path.join(ctx, "files", "g"))


def _file_to_host_symlink(ctx, victim):
    """A file replaced by a symlink to a host file (think /etc/shadow)."""
    os.unlink(os.path.join(ctx, "files", "g"))
    os.symlink(str(victim / "sub" / "f"), os.path.join(ctx, "files", "g"))


def _dir_to_root_symlink(ctx, victim):
    shutil.rmtree(os.path.join(ctx, "files", "sub"))
    os.symlink("/", os.path.join(ctx, "files", "sub"))


def _file_grown(ctx, victim):
    with open(os.path.join(ctx, "files", "g"), "ab") as f:
        f.write(SECRET)


def _file_rewritten_same_size(ctx, victim):
    with open(os.path.join(ctx, "files", "sub", "f"), "r+b") as f:
        f.write(b"MINE")


SWAPS = [_dir_to_symlink, _file_to_fifo, _file_to_host_symlink, _dir_to_root_symlink,
         _file_grown, _file_rewritten_same_size]  # fmt: skip


@pytest.mark.parametrize("swap", SWAPS, ids=[s.__name__.strip("_") for s in SWAPS])
def test_context_swapped_after_listing_is_refused(hostile, swap):
    env, ctx, swaps, build = hostile
    swaps.append(swap)
    blobs = _blobs(env)
    with pytest.raises(InvalidArgument, match="changed while it was being copied"):
        build(ctx, "FROM busybox\nCOPY files /files\n", tags=["t:1"])
    assert not [i for i in env.store.list_images() if "localhost/t:1" in i.names]
    assert _blobs(env) == blobs  # nothing of the step was published


def _blobs(env) -> set[str]:
    return set(os.listdir(os.path.join(env.store.root, "blobs", "sha256")))


@pytest.mark.parametrize("change", ["grow", "shrink", "rewrite"])
def test_file_changed_while_it_is_read_is_refused(hostile, monkeypatch, change):
    """The file changes after the writer opened and checked it, while its bytes are read."""
    import kiln.archive.tar_writer as tar_writer

    env, ctx, _, build = hostile
    big = os.path.join(ctx, "files", "big")
    with open(big, "wb") as f:
        f.write(os.urandom(1 << 20))
    real = tar_writer._copy_content

    def changed_midway(sink, entry, fd, content):
        if entry.source is not None and os.path.samefile(entry.source, big):
            with open(big, "r+b") as f:
                if change == "grow":
                    f.seek(0, os.SEEK_END)
                    f.write(SECRET)
                elif change == "shrink":
                    f.truncate(1000)
                else:
                    f.write(b"changed")
        return real(sink, entry, fd, content)

    monkeypatch.setattr(tar_writer, "_copy_content", changed_midway)
    blobs = _blobs(env)
    with pytest.raises(InvalidArgument, match="changed while it was being copied"):
        build(ctx, "FROM busybox\nCOPY files /files\n", tags=["t:1"])
    assert not [i for i in env.store.list_images() if "localhost/t:1" in i.names]
    assert _blobs(env) == blobs


def test_symlink_out_of_the_context_stays_a_symlink(hostile):
    env, ctx, _, build = hostile
    result = build(ctx, "FROM busybox\nCOPY files /files\n")
    assert SECRET not in env.layer_bytes(result.image_id)
    assert env.files(result.image_id)["files/out-link"] == "other"


@pytest.mark.parametrize("swap", [_file_to_host_symlink, _dir_to_root_symlink, _dir_to_symlink],
                         ids=["file_to_host_symlink", "dir_to_root_symlink", "dir_to_symlink"])  # fmt: skip
def test_context_swapped_after_the_layer_was_written_first(build_env, tmp_path, monkeypatch, swap):  # noqa: F811
    """The swap comes once the layer was written before its key: the key's listing sees
    the links, drops the written layer and writes the links as links; nothing of the host
    is read into the layer."""
    import kiln.build.layer_first as layer_first

    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_bytes(SECRET)
    ctx = build_env.context_dir(files={"files/sub/f": "mine\n", "files/g": "g\n"})
    real = layer_first.write_first

    def written_then_swapped(*args, **kwargs):
        out = real(*args, **kwargs)
        assert out is not None
        swap(ctx, victim)
        return out

    # stage_run imports it when a COPY needs it
    monkeypatch.setattr(layer_first, "write_first", written_then_swapped)
    result = build_env.build(ctx, "FROM busybox\nCOPY files /files\n", write_first_at=1)
    assert SECRET not in build_env.layer_bytes(result.image_id)
    files = build_env.files(result.image_id)
    assert files["files/g" if swap is _file_to_host_symlink else "files/sub"] == "other"


@pytest.mark.parametrize("write_first_at", [0, 1], ids=["key-first", "write-first"])
@pytest.mark.parametrize(("text", "fifo"),
                         [("COPY pipe /pipe", "pipe"), ("ADD pipe /pipe", "pipe"),
                          ("COPY . /app", "app/pipe"), ("ADD . /app", "app/pipe")])  # fmt: skip
def test_a_fifo_in_the_context_is_never_read(build_env, text, fifo, write_first_at):  # noqa: F811
    """No path opens a FIFO of the context (reading it would block the build for good):
    as Docker does, the FIFO itself is copied."""
    ctx = build_env.context_dir(files={"a.txt": "a\n"})
    os.mkfifo(os.path.join(ctx, "pipe"))
    result = build_env.build(ctx, f"FROM busybox\n{text}\n", write_first_at=write_first_at)
    img = build_env.image(result.image_id)
    with img.open_layer(img.layers[-1]) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        fifos = [m.name.lstrip("./") for m in tar if m.isfifo()]
    assert fifos == [fifo]
