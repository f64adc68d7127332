"""Hostile git sources: a ref that git would read as an option, subdirs leaving the checkout
(``..``, absolute, a symlink pointing out), a submodule reaching into the builder's disk, a
user config that would run programs, a server that never answers, credentials in errors.
Nothing of these may run code, read outside the checkout, hang, or leave a directory."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from git_repos import commit, git, have_git, make_repo, push
from git_server import GitHttpServer
from kiln.container.git_source import git_checkout, parse_git_source, resolve_commit
from kiln.errors import InvalidArgument, KilnError, NotFound, Unavailable

pytestmark = [pytest.mark.skipif(not have_git(), reason="needs git"), pytest.mark.timeout(120)]


@pytest.fixture
def served(tmp_path):
    srv = tmp_path / "srv"
    repo = make_repo(srv / "app.git", {"README": "hello\n", "inside/f": "f\n"})
    with GitHttpServer(srv) as http:
        yield repo, http


def clone(spec: str, scratch, **kw):
    src = parse_git_source(spec)
    with git_checkout(src, str(scratch), what="ADD", **kw) as checkout:
        return sorted(os.listdir(checkout.path))


def test_a_ref_that_is_an_option_is_refused_before_git_runs(served, tmp_path):
    _, http = served
    mark = tmp_path / "pwned"
    for ref in (f"--upload-pack=touch {mark}", "-oProxyCommand=x", f"--exec=touch {mark}"):
        with pytest.raises(InvalidArgument, match="starts with '-'"):
            clone(f"{http.url('app.git')}#{ref}", tmp_path)
    assert not mark.exists()
    assert not [r for r in http.requests if "upload-pack=" in r]


@pytest.mark.parametrize("subdir", ["../..", "inside/../../..", "/etc", "a/../../b"])
def test_a_subdir_leaving_the_checkout_is_refused(served, tmp_path, subdir):
    _, http = served
    with pytest.raises(InvalidArgument, match="inside the repository"):
        clone(f"{http.url('app.git')}#main:{subdir}", tmp_path)


@pytest.mark.parametrize("target", ["/etc", "../../../../../../etc", "inside/../.."])
def test_a_symlinked_subdir_pointing_out_is_refused(served, tmp_path, target):
    repo, http = served
    commit(repo.with_suffix(".work"), {"out": ("->", target), "ok": ("->", "inside")})
    push(repo, "main")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(InvalidArgument, match="leads out of the repository"):
        clone(f"{http.url('app.git')}#main:out", scratch)
    assert clone(f"{http.url('app.git')}#main:ok", scratch) == ["f"]  # in-repo: followed
    assert os.listdir(scratch) == [], "the clone is removed, on failure too"


def test_a_submodule_pointing_at_a_local_path_is_not_cloned(served, tmp_path, monkeypatch):
    repo, http = served
    home = tmp_path / "home"  # a user who allows file:// everywhere: kiln's setting wins
    home.mkdir()
    (home / ".gitconfig").write_text('[protocol "file"]\n\tallow = always\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    secret = make_repo(tmp_path / "private" / "secret.git", {"key": "TOP-SECRET\n"})
    work = repo.with_suffix(".work")
    for i, url in enumerate((str(secret), f"file://{secret}")):
        git(work, "-c", "protocol.file.allow=always", "submodule", "add", "-q", url, f"s{i}")
        git(work, "commit", "-q", "-m", f"submodule {i}")
        push(repo, "main")
        scratch = tmp_path / f"scratch{i}"
        scratch.mkdir()
        with pytest.raises(KilnError, match="not allowed") as err:
            clone(http.url("app.git"), scratch)
        assert "TOP-SECRET" not in str(err.value)
        assert os.listdir(scratch) == []
        git(work, "rm", "-q", "-f", f"s{i}")
        git(work, "commit", "-q", "-m", "drop")


def test_user_config_cannot_make_git_run_programs(served, tmp_path, monkeypatch):
    _, http = served
    mark = tmp_path / "ran"
    hook = tmp_path / "hooks" / "post-checkout"
    hook.parent.mkdir()
    hook.write_text(f"#!/bin/sh\ntouch {mark}\n")
    hook.chmod(0o755)
    monitor = tmp_path / "fsmonitor"
    monitor.write_text(f"#!/bin/sh\ntouch {mark}\n")
    monitor.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f"[core]\n\thooksPath = {hook.parent}\n\tfsmonitor = {monitor}\n"
        '[protocol "file"]\n\tallow = always\n'
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    assert clone(f"{http.url('app.git')}#main", tmp_path) == ["README", "inside"]
    assert not mark.exists(), "a hook or fsmonitor from the user's config ran"


def test_credentials_never_reach_the_error(served, tmp_path):
    _, http = served
    url = http.url("missing.git").replace("http://", "http://user:hunter2-token@")
    with pytest.raises(NotFound, match=r"user:\*\*\*@.*missing\.git.* not found") as err:
        resolve_commit(parse_git_source(url + "#main"), what=f"ADD {url}")
    assert "hunter2-token" not in str(err.value)
    with pytest.raises(NotFound, match=r"repository '.*/missing\.git/' not found") as err:
        clone(url + "#main", tmp_path)
    assert "hunter2-token" not in str(err.value)
    with pytest.raises(NotFound) as err:
        clone(http.url("app.git").replace("http://", "http://u:hunter2-token@") + "#nope",
              tmp_path)  # fmt: skip
    assert "hunter2-token" not in str(err.value) and "nope" in str(err.value)


def test_a_server_that_never_answers_is_bounded(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # and never answer
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow.git#main"
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not finish"):
            clone(url, tmp_path, timeout=3)
        assert time.monotonic() - started < 20
        assert os.listdir(tmp_path) == []
    finally:
        stop.set()
        thread.join(timeout=5)
        for s in held:
            s.close()
        listener.close()
