"""``ADD <git URL>`` and git build contexts, against a real git server (``git http-backend``
on 127.0.0.1) and ``file://`` repositories: what is checked out, what the cache keys on
(the commit the ref names now), ``--keep-git-dir``, submodules, and the API's ``remote=``."""

from __future__ import annotations

import os
import tarfile

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from git_repos import commit, git, have_git, make_repo, push
from git_server import GitHttpServer

pytestmark = [*ROOT_MARKS, pytest.mark.skipif(not have_git(), reason="needs git")]

FILES = {
    "README": "hello\n",
    "bin/run": ("#!/bin/sh\necho run\n", 0o755),
    "sub/inner.txt": "inner\n",
    "link": ("->", "sub/inner.txt"),
}


@pytest.fixture
def server(tmp_path):
    srv = tmp_path / "srv"
    repo = make_repo(srv / "app.git", FILES)
    with GitHttpServer(srv) as http:
        yield repo, http


def entries(env, image_id: str, prefix: str) -> dict[str, tuple]:
    """path -> (kind, mode, uid, gid, bytes|target) of the image's entries under prefix."""
    img = env.image(image_id)
    seen: dict[str, tuple] = {}
    for desc in img.layers:
        with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for m in tar:
                name = m.name.lstrip("./").rstrip("/")
                if not name.startswith(prefix):
                    continue
                data = tar.extractfile(m).read() if m.isfile() else m.linkname
                kind = "file" if m.isfile() else "dir" if m.isdir() else "link"
                seen[name] = (kind, m.mode & 0o7777, m.uid, m.gid, data)
    return seen


def test_add_git_checks_out_the_default_branch_without_git_dir(build_env, server):  # noqa: F811
    repo, http = server
    ctx = build_env.context_dir()
    out = build_env.build(ctx, f"FROM busybox\nADD {http.url('app.git')} /app\n")
    got = entries(build_env, out.image_id, "app")
    assert got["app/README"] == ("file", 0o644, 0, 0, b"hello\n")
    assert got["app/bin/run"][:2] == ("file", 0o755)
    assert got["app/link"] == ("link", 0o777, 0, 0, "sub/inner.txt")
    assert got["app/sub/inner.txt"][4] == b"inner\n"
    assert not [p for p in got if "/.git" in p or p.endswith(".git")], sorted(got)


def test_add_git_refs_tags_commits_and_subdirs(build_env, server):  # noqa: F811
    repo, http = server
    work = repo.with_suffix(".work")
    first = git(work, "rev-parse", "HEAD")
    git(work, "tag", "-a", "v1", "-m", "release 1")
    commit(work, {"README": "changed\n"})
    git(work, "checkout", "-q", "-b", "feature")
    commit(work, {"feature.txt": "f\n"})
    push(repo, "main", "feature", "v1")
    url = http.url("app.git")
    ctx = build_env.context_dir()
    text = (
        "FROM busybox\n"
        f"ADD {url}#v1 /tag\n"
        f"ADD {url}#{first} /sha\n"
        f"ADD {url}#{first[:10]} /short\n"
        f"ADD {url}#feature:sub /featsub/\n"
        f"ADD {url}#main /main\n"
    )
    out = build_env.build(ctx, text)
    files = build_env.files(out.image_id)
    assert files["tag/README"] == b"hello\n"
    assert files["sha/README"] == b"hello\n"
    assert files["short/README"] == b"hello\n"
    assert files["featsub/inner.txt"] == b"inner\n" and "featsub/README" not in files
    assert files["main/README"] == b"changed\n" and "main/feature.txt" not in files


def test_add_git_cache_keys_on_the_commit_the_ref_names(build_env, server):  # noqa: F811
    repo, http = server
    ctx = build_env.context_dir()
    text = f"FROM busybox\nADD {http.url('app.git')}#main /app\n"
    first = build_env.build(ctx, text)
    assert build_env.build(ctx, text).image_id == first.image_id, "same commit: a cache hit"
    commit(repo.with_suffix(".work"), {"README": "second\n"})
    push(repo, "main")
    moved = build_env.build(ctx, text)
    assert moved.image_id != first.image_id, "the branch moved: a miss, not stale files"
    assert build_env.files(moved.image_id)["app/README"] == b"second\n"


def test_add_keep_git_dir_keeps_a_usable_repository_without_credentials(build_env, server):  # noqa: F811
    repo, http = server
    url = http.url("app.git").replace("http://", "http://user:s3cr3t-token@")
    ctx = build_env.context_dir()
    text = (
        f"FROM busybox\nADD --keep-git-dir {url}#main /app\n"
        "RUN test -d /app/.git && test -f /app/.git/HEAD\n"
    )
    out = build_env.build(ctx, text)
    files = build_env.files(out.image_id)
    assert files["app/README"] == b"hello\n"
    assert "app/.git/HEAD" in files
    assert b"s3cr3t-token" not in build_env.layer_bytes(out.image_id)
    assert "s3cr3t-token" not in repr(build_env.image(out.image_id).config)


def test_add_git_with_a_submodule(build_env, tmp_path):  # noqa: F811
    srv = tmp_path / "srv"
    make_repo(srv / "lib.git", {"lib.txt": "lib\n"})
    app = make_repo(srv / "app.git", {"README": "app\n"})
    with GitHttpServer(srv) as http:
        work = app.with_suffix(".work")
        git(work, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
            http.url("lib.git"), "vendor/lib")  # fmt: skip
        git(work, "commit", "-q", "-m", "submodule")
        push(app, "main")
        ctx = build_env.context_dir()
        out = build_env.build(ctx, f"FROM busybox\nADD {http.url('app.git')} /app\n")
    files = build_env.files(out.image_id)
    assert files["app/vendor/lib/lib.txt"] == b"lib\n"
    assert "app/vendor/lib/.git" not in files, "no git file pointing at a removed directory"


def test_copy_refuses_a_git_source(build_env, server):  # noqa: F811
    from kiln.errors import InvalidArgument

    _, http = server
    ctx = build_env.context_dir()
    with pytest.raises(InvalidArgument, match="use ADD for git"):
        build_env.build(ctx, f"FROM busybox\nCOPY {http.url('app.git')} /app\n")


# -- git build contexts ------------------------------------------------------------------------


def build_remote(env, spec: str, **options):
    from kiln.build.options import BuildOptions
    from kiln.ops.build import build

    return build(env.ctx, BuildOptions(context=spec, tmpdir=str(env.tmp_path), **options))


def test_build_context_from_git_url_with_ref_and_subdir(build_env, tmp_path, server):  # noqa: F811
    repo, http = server
    work = repo.with_suffix(".work")
    commit(work, {"ctxdir/Dockerfile": "FROM busybox\nCOPY . /ctx/\n", "ctxdir/f.txt": "f\n"})
    push(repo, "main")
    out = build_remote(build_env, f"{http.url('app.git')}#main:ctxdir")
    files = build_env.files(out.image_id)
    assert files["ctx/f.txt"] == b"f\n"
    assert "ctx/README" not in files and not any(".git" in p for p in files)


def test_build_context_from_a_file_url(build_env, tmp_path, server):  # noqa: F811
    repo, _ = server
    work = repo.with_suffix(".work")
    commit(work, {"Dockerfile": "FROM busybox\nCOPY README /r\n"})
    push(repo, "main")
    out = build_remote(build_env, f"file://{repo}")
    assert build_env.files(out.image_id)["r"] == b"hello\n"
    assert not [n for n in os.listdir(tmp_path) if n.startswith("kiln-context-")]


def test_api_remote_builds_from_a_git_url(tmp_path, server):
    import docker

    from api_server import busybox_sh_tar, start_server, stop_server

    repo, http = server
    commit(repo.with_suffix(".work"), {"Dockerfile": "FROM base:1\nCOPY README /r\n"})
    push(repo, "main")
    proc, sock = start_server(tmp_path)
    try:
        client = docker.APIClient(base_url=f"unix://{sock}", timeout=120)
        client.import_image_from_data(busybox_sh_tar(), repository="base", tag="1")
        lines = list(client.build(path=f"{http.url('app.git')}#main", tag="fromgit:1",
                                  decode=True))  # fmt: skip
        assert not [ln for ln in lines if "error" in ln], lines
        assert any("Successfully built" in ln.get("stream", "") for ln in lines), lines
        assert client.inspect_image("fromgit:1")["Id"]
        # a file:// remote would read the server's own disk: refused
        refused = client._post(client._url("/build"), params={"remote": f"file://{repo}"})
        assert refused.status_code == 400 and "remote" in refused.text, refused.text
    finally:
        assert stop_server(proc) == 0


def test_named_build_context_from_git(build_env, server):  # noqa: F811
    _, http = server
    ctx = build_env.context_dir()
    text = "FROM busybox\nCOPY --from=src sub/inner.txt /from-git\n"
    out = build_env.build(ctx, text, build_contexts={"src": f"{http.url('app.git')}#main"})
    assert build_env.files(out.image_id)["from-git"] == b"inner\n"


def test_add_git_checksum_pins_the_commit(build_env, server):  # noqa: F811
    from kiln.errors import DigestMismatch, InvalidArgument

    repo, http = server
    head = git(repo, "rev-parse", "main")
    url = http.url("app.git")
    ctx = build_env.context_dir()
    out = build_env.build(ctx, f"FROM busybox\nADD --checksum={head} {url}#main /app\n")
    assert build_env.files(out.image_id)["app/README"] == b"hello\n"
    with pytest.raises(DigestMismatch, match="expected commit"):
        build_env.build(ctx, f"FROM busybox\nADD --checksum={'f' * 40} {url}#main /app\n")
    with pytest.raises(InvalidArgument, match="commit's SHA"):
        build_env.build(ctx, f"FROM busybox\nADD --checksum=sha256:{'f' * 64} {url} /app\n")
