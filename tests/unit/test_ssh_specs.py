"""``--ssh`` values and ``RUN --mount=type=ssh`` fields, as BuildKit reads them; an ssh
mount's cache key holds its own fields only."""

from __future__ import annotations

import os

import pytest

from kiln.build.cache_key import step_key
from kiln.build.instructions import Run
from kiln.build.mounts import parse_mount
from kiln.errors import InvalidArgument
from kiln.runtime.ssh_agent import SshAgents, SshSource, parse_ssh_specs


def test_ssh_specs():
    assert parse_ssh_specs(["default"]) == {"default": SshSource("default")}
    assert parse_ssh_specs(["gh=/a/key,/b/key", "x"]) == {
        "gh": SshSource("gh", ("/a/key", "/b/key")),
        "x": SshSource("x"),
    }
    rel = parse_ssh_specs(["k=key"])["k"].paths[0]
    assert rel == os.path.join(os.getcwd(), "key")


@pytest.mark.parametrize("spec", ["../x=/k", "a/b", "", "=/k", "a=", "a b=/k", "-x"])
def test_ssh_ids_that_are_not_names_are_refused(spec):
    with pytest.raises(InvalidArgument, match="--ssh"):
        parse_ssh_specs([spec])


def test_the_same_id_twice_is_refused():
    with pytest.raises(InvalidArgument, match="twice"):
        parse_ssh_specs(["default", "default=/k"])


def test_default_without_an_agent_says_so(monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(InvalidArgument, match="SSH_AUTH_SOCK is not set"):
        SshAgents(parse_ssh_specs(["default"])).__enter__()


def test_a_missing_path_is_neither_socket_nor_key(tmp_path):
    with pytest.raises(Exception, match="not a socket or a key file"):
        SshAgents(parse_ssh_specs([f"a={tmp_path / 'nothing'}"])).__enter__()


def test_ssh_mount_fields():
    m = parse_mount("type=ssh")
    assert (m.id, m.target, m.mode, m.readonly, m.required) == ("default", None, 0o600, True, False)
    m = parse_mount("type=ssh,id=gh,target=/a,uid=1,gid=2,mode=0440,required")
    assert (m.id, m.target, m.uid, m.gid, m.mode, m.required) == ("gh", "/a", 1, 2, 0o440, True)
    with pytest.raises(InvalidArgument, match="source"):
        parse_mount("type=ssh,source=/x")
    with pytest.raises(InvalidArgument, match="from"):
        parse_mount("type=ssh,from=stage")


def _run(*mounts: str) -> Run:
    return Run(1, "RUN true", ("true",), True, mounts=tuple(parse_mount(m) for m in mounts))


def test_cache_key_holds_the_ssh_mount_not_the_agent():
    plain = step_key("p", _run())
    ssh = step_key("p", _run("type=ssh"))
    assert plain != ssh  # the mount's presence changes the step
    assert step_key("p", _run("type=ssh,id=other")) != ssh
    assert step_key("p", _run("type=ssh")) == ssh  # nothing of the host goes in
