"""The build context's per-directory checksum index (kiln.build.context_index, one file per
context in the store) damaged, foreign or replaced: a build ignores it and rehashes, never
fails, hangs or trusts what it says, and writes a good one again. (A file made to match its
CRC-32 is trusted: whoever can write the store can write its blobs and database too.) Two builds of one context
writing their indexes over each other leave one that a third build trusts correctly; the
temporary file of a build killed while writing one goes with the next write.
"""

from __future__ import annotations

import marshal
import os
import signal
import subprocess
import sys
import zlib

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from killed_process import kill_when_started
from kiln.build.context_index import DirIndex

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def trust_files_written_now(monkeypatch):
    import kiln.build.context as context_module

    monkeypatch.setattr(context_module, "RACY_NS", 0)  # the files were written just now


DOCKERFILE = "FROM busybox\nCOPY . /app\n"
MAGIC = b"KILNCTX2"


def _framed(doc: object) -> bytes:
    """An index file holding ``doc`` ({"v", "root", "dirs"}; anything else as the header)
    with a good CRC."""
    items = doc if not isinstance(doc, dict) else [
        {k: v for k, v in doc.items() if k != "dirs"}, *doc.get("dirs", {}).items()
    ]  # fmt: skip
    body = b"".join(len(f).to_bytes(4, "big") + f for f in map(marshal.dumps, items))
    return MAGIC + body + zlib.crc32(body).to_bytes(4, "big")


def _context(env) -> str:
    ctx = env.context_dir(files={"a.txt": "a\n", "sub/b.txt": "bbbb\n", "sub/deep/c.txt": "c\n"})
    with open(os.path.join(ctx, ".dockerignore"), "w") as f:
        f.write("ignored\n")
    return ctx


def _index_file(env) -> str:
    folder = os.path.join(env.store.root, "context-index")
    (name,) = [n for n in os.listdir(folder) if "." not in n]  # not a temporary file, nor its .root
    return os.path.join(folder, name)


def _records(env, ctx: str, path: str) -> dict:
    return DirIndex.load(_read(path), os.path.realpath(ctx)).records


def _replace(path: str, data: bytes) -> None:
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _payload(path: str) -> dict:
    """The index file's header and records as one {"v", "root", "dirs"}."""
    body, at, items = _read(path)[len(MAGIC) : -4], 0, []
    while at < len(body):
        n = int.from_bytes(body[at : at + 4], "big")
        items.append(marshal.loads(body[at + 4 : at + 4 + n]))
        at += 4 + n
    return {**items[0], "dirs": dict(items[1:])}


def _random(path, root):
    _replace(path, os.urandom(4096))


def _empty(path, root):
    _replace(path, b"")


def _truncated(path, root):
    data = _read(path)
    _replace(path, data[: len(data) // 2])


def _version_2(path, root):
    doc = _payload(path)
    doc["v"] = 2
    _replace(path, _framed(doc))


def _huge_line(path, root):
    _replace(path, b"x" * (16 << 20))


def _another_context(path, root):
    doc = _payload(path)
    doc["root"] = "/somewhere/else"
    _replace(path, _framed(doc))


def _wrong_types(path, root):
    doc = _payload(path)
    doc["dirs"] = {rel: tuple("x" for _ in rec) for rel, rec in doc["dirs"].items()}
    _replace(path, _framed(doc))


def _not_a_dict(path, root):
    _replace(path, _framed([["v", 4]]))


def _a_frame_past_the_end(path, root):
    body = _read(path)[len(MAGIC) : -4] + (1 << 30).to_bytes(4, "big") + b"x"
    _replace(path, MAGIC + body + zlib.crc32(body).to_bytes(4, "big"))


def _a_path_not_a_string(path, root):
    doc = _payload(path)
    doc["dirs"] = {i: rec for i, rec in enumerate(doc["dirs"].values())}
    _replace(path, _framed(doc))


def _a_directory(path, root):
    os.unlink(path)
    os.mkdir(path)


def _a_fifo(path, root):
    os.unlink(path)
    os.mkfifo(path)


def _a_symlink_to_dev_zero(path, root):
    os.unlink(path)
    os.symlink("/dev/zero", path)


DAMAGE = [_random, _empty, _truncated, _version_2, _huge_line, _another_context, _wrong_types,
          _not_a_dict, _a_frame_past_the_end, _a_path_not_a_string, _a_directory, _a_fifo,
          _a_symlink_to_dev_zero]  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_a_damaged_index_is_ignored_and_written_again(build_env, damage):  # noqa: F811
    ctx = _context(build_env)
    first = build_env.build(ctx, DOCKERFILE)
    path = _index_file(build_env)
    assert _records(build_env, ctx, path)
    damage(path, ctx)
    # unchanged: the same key from a rehash, so a hit
    again = build_env.build(ctx, DOCKERFILE)
    assert (again.cache_hits, again.image_id) == (1, first.image_id)
    # a file rewritten with the same size and mtime (only its ctime tells): new content
    damage_again = os.path.lexists(path) and os.path.isfile(path) and not os.path.islink(path)
    if damage_again:
        damage(path, ctx)
    b = os.path.join(ctx, "sub", "b.txt")
    st = os.stat(b)
    with open(b, "w") as f:
        f.write("BBBB\n")
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = build_env.build(ctx, DOCKERFILE)
    assert changed.cache_hits == 0
    assert build_env.files(changed.image_id)["app/sub/b.txt"] == b"BBBB\n"
    if os.path.isfile(path) and not os.path.islink(path):
        assert _records(build_env, ctx, path)  # a good index again


# a kiln build in another process, trusting files written just now as this one does
CHILD_BUILD = [sys.executable, "-c", "import sys, kiln.build.context as c; c.RACY_NS = 0; "
               "from kiln.cli.main import main; sys.argv[0] = 'kiln'; main()",
               "--root", "{root}", "build", "-q", "--layers", "{ctx}"]  # fmt: skip


def test_an_index_written_by_a_concurrent_build(build_env, monkeypatch):  # noqa: F811
    """Another build of the context writes its index between this build's read and write
    of it (it runs whole inside this one's write): each replaces the file whole, and the
    next build trusts what the last writer saw and no more."""
    store = build_env.store
    ctx = _context(build_env)
    build_env.build(ctx, DOCKERFILE)
    with open(os.path.join(ctx, "a.txt"), "w") as f:
        f.write("a2\n")
    real = store.put_context_index
    others = []

    def other_build_first(*args):
        if not others:
            argv = [a.format(root=store.root, ctx=ctx) for a in CHILD_BUILD]
            others.append(subprocess.run(argv, capture_output=True, text=True, timeout=120))
        return real(*args)

    monkeypatch.setattr(store, "put_context_index", other_build_first)
    mine = build_env.build(ctx, DOCKERFILE)
    monkeypatch.undo()
    assert others and others[0].returncode == 0, others[0].stderr
    assert build_env.files(mine.image_id)["app/a.txt"] == b"a2\n"
    path = _index_file(build_env)
    assert _records(build_env, ctx, path)
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []
    # a change after both: seen by the next build
    with open(os.path.join(ctx, "a.txt"), "w") as f:
        f.write("a3\n")
    last = build_env.build(ctx, DOCKERFILE)
    assert last.cache_hits == 0
    assert build_env.files(last.image_id)["app/a.txt"] == b"a3\n"
    again = build_env.build(ctx, DOCKERFILE)
    assert (again.cache_hits, again.image_id) == (1, last.image_id)


# a build SIGKILLed once its new index is written to a temporary file, before the rename
KILLED_WRITER = """
import os, sys, time
import kiln.build.context as c
from kiln.cli.main import main
c.RACY_NS = 0
real = os.replace
def stop_before(src, dst, *args, **kwargs):
    if os.path.basename(os.path.dirname(dst)) == "context-index":
        print("written", flush=True)
        time.sleep(600)
    return real(src, dst, *args, **kwargs)
os.replace = stop_before
sys.argv[0] = "kiln"
main()
"""


def test_a_killed_writers_temporary_index_goes_with_the_next_write(build_env):  # noqa: F811
    ctx = _context(build_env)
    build_env.build(ctx, DOCKERFILE)
    path = _index_file(build_env)
    with open(os.path.join(ctx, "a.txt"), "w") as f:
        f.write("a2\n")
    argv = [sys.executable, "-c", KILLED_WRITER, "--root", build_env.store.root, "build", "-q",
            "--layers", ctx]  # fmt: skip
    assert kill_when_started(argv, "written") == -signal.SIGKILL
    folder = os.path.dirname(path)
    assert len([n for n in os.listdir(folder) if n.endswith(".tmp")]) == 1
    with open(os.path.join(ctx, "a.txt"), "w") as f:
        f.write("a3\n")
    build_env.build(ctx, DOCKERFILE)
    assert [n for n in os.listdir(folder) if n.endswith(".tmp")] == []
    assert _records(build_env, ctx, path)
