"""Reading git sources as BuildKit does (which strings are repositories, ``#ref:subdir``),
and cloning local ``file://`` repositories: refs, peeled tags, ``.git`` kept or not, the
clone directory always removed, and a clear error without git."""

from __future__ import annotations

import os

import pytest

from git_repos import commit, git, have_git, make_repo, push
from kiln.container.git_source import (
    GitSource,
    git_checkout,
    is_git_source,
    parse_git_source,
    resolve_commit,
)
from kiln.errors import InvalidArgument, NotFound, Unavailable


@pytest.mark.parametrize(
    ("src", "is_git"),
    [
        ("https://host/repo.git", True),
        ("https://host/repo.git/", True),
        ("https://host/repo#main", True),
        ("http://host/archive.tar.gz", False),
        ("https://host/repo.git?x=1", True),
        ("git@github.com:o/r.git", True),
        ("git://host/r", True),
        ("ssh://git@host/r", True),
        ("file:///srv/r.git", False),  # never for ADD
        ("local/dir", False),
    ],
)
def test_which_sources_are_repositories(src, is_git):
    assert is_git_source(src) is is_git


def test_file_urls_are_repositories_only_as_contexts():
    assert is_git_source("file:///srv/r.git", local=True)
    assert not is_git_source("file:///srv/r.tar", local=True)


@pytest.mark.parametrize(
    ("src", "parsed"),
    [
        ("https://h/r.git", GitSource("https://h/r.git")),
        ("https://h/r.git#v1.2", GitSource("https://h/r.git", "v1.2")),
        ("https://h/r.git#main:docs/site", GitSource("https://h/r.git", "main", "docs/site")),
        ("https://h/r.git#:sub/", GitSource("https://h/r.git", "", "sub")),
        ("https://h/r.git#main:./", GitSource("https://h/r.git", "main", "")),
        ("git@h:o/r.git#refs/pull/1/head", GitSource("git@h:o/r.git", "refs/pull/1/head")),
    ],
)
def test_fragments(src, parsed):
    assert parse_git_source(src) == parsed


@pytest.mark.parametrize(
    "src",
    ["https://h/r.git#-x", "https://h/r.git#--upload-pack=sh", "https://h/r.git#a..b",
     "https://h/r.git#ma in", "https://h/r.git#main:../x", "https://h/r.git#main:/abs"],
)  # fmt: skip
def test_hostile_fragments_are_refused(src):
    with pytest.raises(InvalidArgument):
        parse_git_source(src)


def test_the_shown_source_has_no_password():
    assert "pw" not in str(parse_git_source("https://u:pw@h/r.git#main"))


needs_git = pytest.mark.skipif(not have_git(), reason="needs git")


@pytest.fixture
def repo(tmp_path):
    bare = make_repo(tmp_path / "r.git", {"a": "1\n", "d/b": "2\n"})
    work = bare.with_suffix(".work")
    git(work, "tag", "-a", "v1", "-m", "one")
    commit(work, {"a": "changed\n"})
    push(bare, "main", "v1")
    return bare


@needs_git
def test_refs_resolve_to_commits_and_tags_peel(repo):
    work = repo.with_suffix(".work")
    head = git(work, "rev-parse", "HEAD")
    tagged = git(work, "rev-parse", "v1^{commit}")
    url = f"file://{repo}"
    assert resolve_commit(parse_git_source(url), what="t") == head
    assert resolve_commit(parse_git_source(f"{url}#main"), what="t") == head
    assert resolve_commit(parse_git_source(f"{url}#v1"), what="t") == tagged
    assert resolve_commit(parse_git_source(f"{url}#{tagged}"), what="t") == tagged
    assert resolve_commit(parse_git_source(f"{url}#{tagged[:8]}"), what="t") is None
    assert resolve_commit(parse_git_source(f"{url}#nope"), what="t") is None


@needs_git
def test_checkout_keeps_git_only_when_asked_and_is_removed(repo, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = parse_git_source(f"file://{repo}#v1")
    with git_checkout(src, str(scratch), what="t") as c:
        assert sorted(os.listdir(c.path)) == ["a", "d"]
        with open(os.path.join(c.path, "a")) as f:
            assert f.read() == "1\n"
    with git_checkout(src, str(scratch), what="t", keep_git_dir=True) as c:
        assert ".git" in os.listdir(c.path)
    assert os.listdir(scratch) == []
    with pytest.raises(NotFound), git_checkout(parse_git_source(f"file://{repo}#nope"),
                                               str(scratch), what="t"):  # fmt: skip
        pass
    assert os.listdir(scratch) == []


@needs_git
def test_the_pinned_commit_is_checked_out_even_after_the_branch_moved(repo, tmp_path):
    work = repo.with_suffix(".work")
    pinned = git(work, "rev-parse", "HEAD")
    commit(work, {"a": "moved on\n"})
    push(repo, "main")
    src = parse_git_source(f"file://{repo}#main")
    with git_checkout(src, str(tmp_path), what="t", commit=pinned) as c:
        assert c.commit == pinned
        with open(os.path.join(c.path, "a")) as f:
            assert f.read() == "changed\n"
    # a server that will not send a commit by its SHA: the history is fetched instead
    git(repo, "config", "uploadpack.allowAnySHA1InWant", "false")
    git(repo, "config", "uploadpack.allowReachableSHA1InWant", "false")
    git(repo, "config", "uploadpack.allowTipSHA1InWant", "false")
    with git_checkout(src, str(tmp_path), what="t", commit=pinned) as c:
        assert c.commit == pinned
    gone = "0" * 40
    with pytest.raises(NotFound, match=gone), git_checkout(src, str(tmp_path), what="t",
                                                           commit=gone):  # fmt: skip
        pass


def test_without_git_the_error_says_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable, match="install the git package"):
        resolve_commit(parse_git_source("https://h/r.git#main"), what="ADD")
