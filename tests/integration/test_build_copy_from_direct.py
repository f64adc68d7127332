"""COPY --from writes its layer straight from the other stage's (or image's) tree when
nothing later in the stage reads the files (kiln.build.copy_direct), and a run of such
COPYs does so without unpacking the layers before it (kiln.build.copy_claims): each layer
must be the one the materialising path (files copied into a working container, its upper
dir tarred) gives, byte for byte, with the same history.

The source stages are built once; each case then builds its final stage twice on the same
store (``--no-cache-filter final``: the sources are the same images): as users get it, and
with the direct path switched off (``BuildOptions.direct_copy=False``). A directory that
takes the time of the copy as its mtime (a parent the copy makes, an image directory it
creates a name in) may differ by a few seconds; every other field must be equal, and with
``--timestamp`` the layers' digests too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import PASSWD, busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from mount_points import mount_points_under

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

MTIME = 1_600_000_000

SOURCES = """\
FROM busybox AS src
COPY files /src
RUN chown -R 1000:1001 /src/owned && chmod 4755 /src/owned/setuid \\
 && ln -s /etc/shadow /src/shadow && ln -s ../../ /src/up \\
 && ln -s ../../../../etc/passwd /src/passwd-up && ln -s src /srclink \\
 && ln /src/a.txt /src/hard && mkfifo /src/fifo \\
 && echo nobody:x:4321:4321:nobody:/:/bin/false > /src/passwd

FROM busybox AS s0
RUN echo stage 0 > /out0

FROM busybox AS s1
RUN echo stage 1 > /out1

FROM busybox AS nopw
RUN rm /etc/passwd

"""

#: case -> (the final stage's steps, how many of its last layers are written straight); a
#: final stage on busybox unless the steps start with their own FROM. (A COPY of a stage's
#: only file to the same path would make that stage's layer, unpacked: hence /c0, /c1.)
CASES = {
    "stages4": (
        "COPY --from=s0 /out0 /c0\nCOPY --from=s1 /out1 /c1\n"
        "COPY --from=src /src /src\nCOPY --from=src /srclink /srclink",
        4,
    ),
    "file": ("COPY --from=src /src/a.txt /a.txt", 1),
    "dir": ("COPY --from=src /src /copied", 1),
    "dir-into-existing": ("COPY --from=src /src /usr/", 1),
    "dir-onto-a-file": ("COPY --from=src /src /etc/", 0),  # /etc/passwd is replaced
    "wildcard": ("COPY --from=src /src/*.txt /texts/", 1),
    "chown-chmod": ("COPY --from=src --chown=1000:1001 --chmod=640 /src /c", 1),
    "chown-name": ("COPY --from=src --chown=nobody /src/a.txt /n", 1),
    "link-flag": ("COPY --link --from=src /src /c", 1),
    "exclude": ("COPY --from=src --exclude=*.log /src /c", 1),
    "exclude-dir": ("COPY --from=src --exclude=owned/deep /src /c", 1),
    "exclude-reinclude": ("COPY --from=src --exclude=*.txt --exclude=!a.txt /src /c", 1),
    "exclude-recursive": ("COPY --from=src --exclude=**/*.bin /src /c", 1),
    "exclude-everything": ("COPY --from=src --exclude=* / /c", 1),
    "exclude-wildcard": ("COPY --from=src --exclude=deep/*.bin --exclude=setuid /src/own* /w/", 1),
    "symlink-source": ("COPY --from=src /srclink /via", 1),
    "through-symlink": ("COPY --from=src /srclink/a.txt /a", 1),
    "through-updir": ("COPY --from=src /src/up/etc/passwd /p", 1),
    "link-out-of-root": ("COPY --from=src /src/passwd-up /pu", 1),
    "image": ("COPY --from=busybox /etc/group /g", 1),
    "meta-between": ("COPY --from=s0 /out0 /o0\nENV A=1\nCOPY --from=s1 /out1 /o1", 2),
    "workdir-first": ("WORKDIR /w\nCOPY --from=src /src/a.txt .", 1),
    # a run of direct COPYs into directories the first made or copied up
    "chain-same-parent": ("COPY --from=s0 /out0 /app/o0\nCOPY --from=s1 /out1 /app/o1", 2),
    "chain-bin": (
        "COPY --from=s0 /out0 /usr/local/bin/o0\nCOPY --from=s1 /out1 /usr/local/bin/o1\n"
        "COPY --from=src /src/a.txt /usr/local/a",
        3,
    ),
    "chain-dir-into-made": ("COPY --from=s0 /out0 /app/o0\nCOPY --from=src /src/owned /app/", 2),
    # the materialising path, or a fallback that unpacks the layers written before it
    "chain-overlap": ("COPY --from=src /src /app\nCOPY --from=s0 /out0 /app/out0", 0),
    "chain-passwd": (  # a --chown name looked up in a passwd file a direct layer holds
        "FROM nopw AS final\nCOPY --from=src /src/passwd /etc/passwd\n"
        "COPY --from=src --chown=nobody /src/a.txt /n",
        0,
    ),
    "chain-then-run": ("COPY --from=s0 /out0 /o0\nCOPY --from=s1 /out1 /o1\nRUN cat /o0", 0),
    "dest-through-symlink": ("COPY --from=s0 /out0 /bin/sh", 0),
}


def _context(env) -> str:
    ctx = env.context_dir()

    def put(rel: str, data: bytes, mode: int = 0o644) -> None:
        path = os.path.join(ctx, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)

    put("files/a.txt", b"alpha\n")
    put("files/b.txt", b"beta\n", 0o600)
    put("files/app.log", b"noise\n")
    put("files/owned/setuid", b"s")
    put("files/owned/deep/x.bin", os.urandom(200_000))
    put("files/" + "n" * 120, b"long name\n")
    for dirpath, dirnames, filenames in os.walk(ctx, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
    return ctx


def _headers(img) -> list[list[tuple]]:
    """Each layer's members: (name, type, mode, uid, gid, mtime, size, link, pax, sha256)."""
    out = []
    for desc in img.layers:
        with img.open_layer(desc) as raw:
            data = gzip.decompress(raw.read())
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            out.append([(m.name, m.type, m.mode, m.uid, m.gid, m.mtime, m.size, m.linkname,
                         dict(m.pax_headers),
                         hashlib.sha256(tar.extractfile(m).read() if m.isfile() else b"")
                         .hexdigest()) for m in tar])  # fmt: skip
    return out


def _build(env, ctx: str, steps: str, direct: bool, **opts):
    base = "" if steps.startswith("FROM ") else "FROM busybox AS final\n"
    text = SOURCES + base + steps + "\n"
    result = env.build(ctx, text, no_cache_filter=["final"], direct_copy=direct, **opts)
    return env.validate(result.image_id)


def _straight(env, img) -> int:
    """How many of the image's last layers are not unpacked (written straight)."""
    n = 0
    for chain in reversed(img.record.layers):
        if env.ctx.snapshots.has_layer(chain):
            break
        n += 1
    return n


@pytest.fixture
def sources(build_env):  # noqa: F811
    """The context, the source stages built once (the cases hit them in the cache), and
    the time from which a directory's mtime may be the copy's."""
    ctx = _context(build_env)
    _build(build_env, ctx, "COPY --from=src /src/b.txt /w\nCOPY --from=s0 /out0 /w0", True)
    return ctx, time.time() - 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_copy_from_layer_is_the_materialised_one(build_env, sources, case):  # noqa: F811
    ctx, since = sources
    steps, straight = CASES[case]
    new = _build(build_env, ctx, steps, direct=True)
    # first: the other build's layers, when the same, have the same chains and are unpacked
    assert _straight(build_env, new) == straight
    old = _build(build_env, ctx, steps, direct=False)
    assert _straight(build_env, old) == 0
    old_h, new_h = _headers(old), _headers(new)
    assert len(new_h) == len(old_h)
    for o_layer, n_layer in zip(old_h, new_h, strict=True):
        assert [m[:5] + m[6:] for m in n_layer] == [m[:5] + m[6:] for m in o_layer]
        for o, n in zip(o_layer, n_layer, strict=True):
            if o[5] != n[5]:  # only a directory of the copy's time may differ
                # the copy's time: since the sources were made, and not after now (two
                # builds on a loaded machine may be many seconds apart)
                assert o[1] == tarfile.DIRTYPE and min(o[5], n[5]) >= int(since), (o, n)
                assert max(o[5], n[5]) <= time.time() + 1, (o, n)
    assert [h.created_by for h in new.config.history] == [h.created_by for h in old.config.history]
    old_ts = _build(build_env, ctx, steps, direct=False, timestamp=MTIME)
    new_ts = _build(build_env, ctx, steps, direct=True, timestamp=MTIME)
    assert new_ts.id == old_ts.id
    assert [d.digest for d in new_ts.layers] == [d.digest for d in old_ts.layers]


def test_copy_from_keeps_links_as_links_inside_the_source(build_env, sources):  # noqa: F811
    """A source stage's symlinks to /etc/shadow or ../../ are copied as symlinks; a source
    path through one resolves inside the source stage's tree, never the host's."""
    ctx, _ = sources
    img = _build(build_env, ctx, "COPY --from=src /src /copied\n"
                 "COPY --from=src /src/up/etc/passwd /p\nCOPY --from=src /src/passwd-up /pu",
                 direct=True)  # fmt: skip
    assert _straight(build_env, img) == 3
    members = {m[0]: m for layer in _headers(img) for m in layer}
    assert members["copied/shadow"][1:2] + members["copied/shadow"][7:8] == (
        tarfile.SYMTYPE,
        "/etc/shadow",
    )
    assert members["copied/up"][1:2] + members["copied/up"][7:8] == (tarfile.SYMTYPE, "../../")
    files = build_env.files(img.id)
    assert files["p"] == PASSWD and files["pu"] == PASSWD
    assert files["copied/owned/setuid"] == b"s"
    assert members["copied/owned/setuid"][2:5] == (0o4755, 1000, 1001)


@pytest.mark.parametrize("fails", [False, True])
def test_a_run_of_direct_copies_leaves_nothing_mounted(build_env, sources, tmp_path, fails):  # noqa: F811
    """The image tree a run of direct COPYs plans against stays mounted from one step to
    the next, and goes with the stage, built or failed (here by a step after them that
    needs no filesystem)."""
    from kiln.errors import KilnError

    ctx, _ = sources
    tmp = tmp_path / "build-tmp"
    tmp.mkdir()
    steps = "COPY --from=s0 /out0 /c0\nCOPY --from=s1 /out1 /c1\n"
    if fails:
        with pytest.raises(KilnError, match="unset"):
            _build(build_env, ctx, steps + "USER ${unset:?unset}", True, tmpdir=str(tmp))
    else:
        assert _straight(build_env, _build(build_env, ctx, steps, True, tmpdir=str(tmp))) == 2
    assert mount_points_under(tmp_path) == []


#: COPY --from with --exclude -> (paths the image must hold, paths it must not)
EXCLUDES = {
    "COPY --from=src --exclude=*.log /src /c": (["c/a.txt", "c/b.txt"], ["c/app.log"]),
    "COPY --from=src --exclude=owned/deep /src /c": (["c/owned/setuid"], ["c/owned/deep"]),
    "COPY --from=src --exclude=*.txt --exclude=!a.txt /src /c": (["c/a.txt"], ["c/b.txt"]),
    "COPY --from=src --exclude=**/*.bin /src /c": (["c/owned/deep"], ["c/owned/deep/x.bin"]),
    # BuildKit's "Exclude all files ... it should not be forbidden": an empty directory
    "COPY --from=src --exclude=* / /c": (["c"], ["c/src", "c/bin", "c/etc"]),
    "COPY --from=src --exclude=deep/*.bin --exclude=setuid /src/own* /w/": (
        ["w/deep"],
        ["w/setuid", "w/deep/x.bin"],
    ),
    # as BuildKit: patterns match below each source, never a source itself nor a path as
    # it is in the tree (kiln refused the first two and left a.txt out of the third)
    "COPY --from=src --exclude=* /src /c": (["c"], ["c/a.txt", "c/owned"]),
    "COPY --from=src --exclude=src/*.txt /src/*.txt /c/": (["c/a.txt", "c/b.txt"], []),
    "COPY --from=src --exclude=src/a.txt /src /c": (["c/a.txt", "c/b.txt"], []),
}


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "materialised"])
@pytest.mark.parametrize("steps", sorted(EXCLUDES))
def test_copy_from_exclude_leaves_the_files_out(build_env, sources, steps, direct):  # noqa: F811
    """``COPY --from --exclude`` leaves out what the patterns match, on both paths, with the
    context's rules: BuildKit (frontend/dockerfile/exclude_patterns_test.go,
    testExcludedFilesOnCopy, its git-context half) copies ``--from=base --exclude=*/*.png
    . /1`` without ``dir1/file-101.png`` and ``--from=base --exclude=*.mp3 dir3/ /3/``
    without ``file-301.mp3``: each pattern is matched below each (wildcard-expanded)
    source, as in ``.dockerignore`` (``**``, ``!`` re-includes). kiln copied them all."""
    ctx, _ = sources
    img = _build(build_env, ctx, steps, direct=direct)
    assert _straight(build_env, img) == (1 if direct else 0)
    files = build_env.files(img.id)
    present, absent = EXCLUDES[steps]
    assert [p for p in present if p not in files] == []
    assert [p for p in absent if p in files] == []


def test_copy_from_exclude_is_in_the_key(build_env, sources):  # noqa: F811
    """Another pattern is another layer (a cache miss), and the same one a hit."""
    ctx, _ = sources
    one = _build(build_env, ctx, "COPY --from=src --exclude=*.log /src /c", True)
    other = build_env.build(
        ctx, SOURCES + "FROM busybox AS final\nCOPY --from=src --exclude=a.txt /src /c\n"
    )
    files = build_env.files(other.image_id)
    assert "c/app.log" in files and "c/a.txt" not in files
    again = build_env.build(
        ctx, SOURCES + "FROM busybox AS final\nCOPY --from=src --exclude=*.log /src /c\n"
    )
    assert again.image_id == one.id


@pytest.mark.parametrize("patterns", ["--exclude=../*", "--exclude=/etc/*", "--exclude=",
                                      "--exclude=../../../../etc/passwd"])  # fmt: skip
def test_copy_from_exclude_patterns_name_paths_inside_the_tree(build_env, sources, patterns):  # noqa: F811
    """A pattern filters what the copy walks in the other stage's tree and nothing else:
    ``../*`` (cleaned, it can match no path of the tree), ``/etc/*`` (the tree's etc, not
    copied here) and an empty pattern (skipped, as BuildKit's patternmatcher skips it)
    leave the copy whole, and read nothing outside the tree; the FIFO of the source stays
    (an unfiltered COPY --from copies it; the context's filtered walk drops FIFOs)."""
    ctx, _ = sources
    plain = build_env.files(_build(build_env, ctx, "COPY --from=src /src /c", True).id)
    steps = f"COPY --from=src {patterns} /src /c"
    assert build_env.files(_build(build_env, ctx, steps, True).id) == plain


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("COPY --from=src --exclude=*.txt /nothing /c", '"/nothing": no such file or directory'
         " in the --from tree"),
        ("COPY --from=src --exclude=*.txt /src/*.none /c/", 'no source files were specified: '
         '"/src/*.none" matches nothing in the --from tree'),
        ("COPY --from=src --exclude=[ /src /c", "syntax error in pattern '['"),
        ("COPY --from=src --exclude=! /src /c", 'illegal exclusion pattern: "!"'),
    ],
)  # fmt: skip
def test_copy_from_exclude_refusals(build_env, sources, steps, message):  # noqa: F811
    """A missing source, a wildcard that matches nothing, and a pattern that does not
    parse fail the step with the line, as for the context (no pattern ever hides a source:
    BuildKit matches them below each source only). kiln ignored the patterns and copied
    everything."""
    from kiln.errors import KilnError

    ctx, _ = sources
    with pytest.raises(KilnError) as info:
        _build(build_env, ctx, steps, True)
    assert message in str(info.value)
    assert "Containerfile:" in str(info.value)
