"""Credential lookup order, auth-file formats, helpers, and atomic auth-file writes."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import stat
import threading

import pytest

from auth_files import basic_auth, install_credential_helper, write_json
from kiln.errors import Conflict, InvalidArgument, NotFound
from kiln.registry import credentials
from kiln.registry.credentials import Credential, lookup
from registry_env import isolate_registry_env


def open_text(path: str) -> str:
    with open(path) as f:
        return f.read()


@pytest.fixture
def home(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    os.makedirs(tmp_path / "home")
    return tmp_path


def _runtime(home) -> str:
    return str(home / "run" / "containers" / "auth.json")


def _config(home) -> str:
    return str(home / "home" / ".config" / "containers" / "auth.json")


def _docker(home) -> str:
    return str(home / "home" / ".docker" / "config.json")


def test_order_creds_then_authfile_then_config_then_docker(home, monkeypatch) -> None:
    write_json(_docker(home), {"auths": {"r.io": basic_auth("docker", "d")}})
    assert lookup("r.io") == Credential("docker", "d")
    write_json(_config(home), {"auths": {"r.io": basic_auth("config", "c")}})
    assert lookup("r.io") == Credential("config", "c")
    write_json(_runtime(home), {"auths": {"r.io": basic_auth("runtime", "r")}})
    assert lookup("r.io") == Credential("runtime", "r")
    env_file = write_json(home / "env.json", {"auths": {"r.io": basic_auth("env", "e")}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", env_file)
    assert lookup("r.io") == Credential("env", "e")
    flag_file = write_json(home / "flag.json", {"auths": {"r.io": basic_auth("flag", "f")}})
    assert lookup("r.io", authfile=flag_file) == Credential("flag", "f")
    assert lookup("r.io", authfile=flag_file, creds="cli:p:with:colons") == Credential(
        "cli", "p:with:colons"
    )
    # other registries fall through to later files
    assert lookup("other.io") is None


def test_a_named_auth_file_still_falls_back_to_the_others_as_podman_4_3(home, monkeypatch):
    """podman 4.3 (containers/image 5.23, getAuthFilePaths) reads the other files after
    the one --authfile or $REGISTRY_AUTH_FILE names; only podman 4.4 (containers/image
    5.24) reads the named file alone. kiln follows 4.3: a credential missing from the
    named file comes from ~/.config, ~/.docker or ~/.dockercfg."""
    named = write_json(home / "named.json", {"auths": {"r.io": basic_auth("named", "n")}})
    write_json(_config(home), {"auths": {"c.io": basic_auth("config", "c")}})
    write_json(_docker(home), {"auths": {"d.io": basic_auth("docker", "d")}})
    write_json(_legacy(home), {"l.io": basic_auth("legacy", "l")})
    for authfile in (named, None):
        if authfile is None:
            monkeypatch.setenv("REGISTRY_AUTH_FILE", named)
        assert lookup("r.io", authfile=authfile) == Credential("named", "n")
        assert lookup("c.io", authfile=authfile) == Credential("config", "c")
        assert lookup("d.io", authfile=authfile) == Credential("docker", "d")
        assert lookup("l.io", authfile=authfile) == Credential("legacy", "l")


def test_most_specific_key_wins_and_docker_hub_legacy_key(home) -> None:
    write_json(
        _config(home),
        {
            "auths": {
                "r.io": basic_auth("host", "1"),
                "r.io/team": basic_auth("ns", "2"),
                "r.io/team/app": basic_auth("repo", "3"),
                "https://index.docker.io/v1/": basic_auth("hub", "4"),
            }
        },
    )
    assert lookup("r.io", "team/app").username == "repo"
    assert lookup("r.io", "team/other").username == "ns"
    assert lookup("r.io", "else/x").username == "host"
    assert lookup("r.io").username == "host"
    assert lookup("docker.io", "library/busybox").username == "hub"


def test_identity_token_entry(home) -> None:
    write_json(_docker(home), {"auths": {"r.io": {"auth": "", "identitytoken": "tok"}}})
    cred = lookup("r.io")
    assert cred.identity_token == "tok" and cred.password == ""


def _legacy(home) -> str:
    return str(home / "home" / ".dockercfg")


def test_legacy_dockercfg_is_the_last_fallback_and_never_written(home, monkeypatch) -> None:
    """Docker's pre-1.7 ``~/.dockercfg`` (no ``auths`` wrapper; keys name a host, with or
    without a scheme and path; ``email`` beside ``auth``): podman reads it after every
    other file, in ``$HOME`` even when ``$DOCKER_CONFIG`` is set, and never writes it."""
    legacy = {
        "https://old.io/v1/": {**basic_auth("old", "o"), "email": "me@old.io"},
        "r.io": basic_auth("legacy", "l"),
        "tok.io/anything": {"identitytoken": "refresh-1"},
    }
    write_json(_legacy(home), legacy)
    before = open_text(_legacy(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "docker-config"))
    assert lookup("old.io", "team/app") == Credential("old", "o")
    assert lookup("tok.io").identity_token == "refresh-1"
    assert lookup("r.io") == Credential("legacy", "l")
    write_json(
        str(home / "docker-config" / "config.json"), {"auths": {"r.io": basic_auth("new", "n")}}
    )
    assert lookup("r.io") == Credential("new", "n")  # every other file comes first
    credentials.store_credential("old.io", Credential("fresh", "f"))
    credentials.remove_credential("old.io")
    assert open_text(_legacy(home)) == before
    assert lookup("old.io") == Credential("old", "o")


def test_bad_entries_are_clear_errors(home) -> None:
    write_json(_config(home), {"auths": {"r.io": {"auth": base64.b64encode(b"nocolon").decode()}}})
    with pytest.raises(InvalidArgument, match="user:password"):
        lookup("r.io")
    with open(_config(home), "w") as f:
        f.write("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        lookup("r.io")


@pytest.mark.parametrize("auths", [5, ["r.io"], "r.io"])
def test_logout_with_a_broken_auths_section_is_a_clear_error(home, auths) -> None:
    write_json(_runtime(home), {"auths": auths})
    with pytest.raises(InvalidArgument, match="invalid auths section"):
        credentials.remove_credential("r.io")
    with pytest.raises(InvalidArgument, match="invalid auths section"):
        credentials.remove_credential(None)
    assert json.loads(open_text(_runtime(home))) == {"auths": auths}  # left as it was


@pytest.mark.parametrize("entry", [{"auth": 5}, {"auth": ["x"]}, {"identitytoken": {"t": 1}}])
def test_auth_entries_that_are_not_strings_are_clear_errors(home, entry) -> None:
    write_json(_config(home), {"auths": {"r.io": entry}})
    with pytest.raises(InvalidArgument, match="auth entry for r.io .* must hold strings"):
        lookup("r.io")


@pytest.fixture
def helper(home, monkeypatch):
    """A fake docker-credential-test on PATH that knows one server."""
    install_credential_helper(
        home / "bin",
        "test",
        '[ "$1" = get ] || exit 2\n'
        "read server\n"
        'echo "$server" >> "$(dirname "$0")/asked"\n'
        'case "$server" in\n'
        '  helper.io) echo \'{"ServerURL":"helper.io","Username":"hu","Secret":"hs"}\' ;;\n'
        '  https://index.docker.io/v1/) echo \'{"Username":"<token>","Secret":"idt"}\' ;;\n'
        "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac",
        monkeypatch,
    )
    return home / "bin"


def test_cred_helpers_and_creds_store(home, helper) -> None:
    write_json(
        _docker(home),
        {
            "auths": {"helper.io": basic_auth("file", "f"), "plain.io": basic_auth("p", "q")},
            "credHelpers": {"helper.io": "test"},
        },
    )
    assert lookup("helper.io") == Credential("hu", "hs")  # credHelpers beats auths
    assert lookup("plain.io") == Credential("p", "q")
    write_json(_docker(home), {"credsStore": "test"})
    assert lookup("helper.io") == Credential("hu", "hs")
    assert lookup("docker.io") == Credential("", "", "idt")
    assert lookup("unknown.io") is None
    asked = (helper / "asked").read_text().split()
    assert "https://index.docker.io/v1/" in asked


def test_helper_printing_json_that_is_not_an_object_is_a_clear_error(home, helper) -> None:
    script = helper / "docker-credential-test"
    script.write_text('#!/bin/sh\necho \'["hu", "hs"]\'\n')
    write_json(_docker(home), {"credHelpers": {"r.io": "test"}})
    with pytest.raises(InvalidArgument, match="docker-credential-test printed something other"):
        lookup("r.io")


def test_missing_helper_is_clear(home) -> None:
    write_json(_docker(home), {"credHelpers": {"r.io": "does-not-exist"}})
    with pytest.raises(InvalidArgument, match="docker-credential-does-not-exist is not installed"):
        lookup("r.io")


def test_store_and_remove_are_atomic_and_private(home) -> None:
    path = credentials.store_credential("r.io", Credential("u", "p"))
    assert path == _runtime(home)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    credentials.store_credential("https://index.docker.io/v1/", Credential("h", "x"))
    obj = json.loads(open_text(path))
    assert set(obj["auths"]) == {"r.io", "docker.io"}
    assert lookup("r.io") == Credential("u", "p")
    assert credentials.remove_credential("r.io") == ["r.io"]
    with pytest.raises(NotFound, match="not logged into r.io"):
        credentials.remove_credential("r.io")
    assert credentials.remove_credential(None) == ["docker.io"]
    assert json.loads(open_text(path))["auths"] == {}
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []


def _in_thread(call) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, raised


def test_a_held_auth_file_lock_is_an_error_naming_it_not_a_hang(home, monkeypatch) -> None:
    """--authfile in a directory any user may lock (/tmp): whoever holds a flock on it
    made every login and logout wait for ever. Now they wait AUTH_FILE_LOCK_WAIT, then
    fail naming the directory and the holder, and change nothing."""
    monkeypatch.setattr(credentials, "AUTH_FILE_LOCK_WAIT", 0.2)
    shared = home / "shared"
    authfile = write_json(shared / "auth.json", {"auths": {"r.io": basic_auth("u", "p")}})
    before = open_text(authfile)
    fd = os.open(shared, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another user's process, holding it
        for call in (
            lambda: credentials.store_credential("q.io", Credential("a", "b"), authfile),
            lambda: credentials.remove_credential("r.io", authfile),
        ):
            t, raised = _in_thread(call)
            t.join(timeout=30)
            assert not t.is_alive(), "the login waited on the held lock for ever"
            assert len(raised) == 1 and isinstance(raised[0], Conflict), raised
            message = str(raised[0])
            assert f"auth file directory {shared} is locked by pid {os.getpid()}" in message
        assert open_text(authfile) == before
    finally:
        os.close(fd)
    credentials.store_credential("q.io", Credential("a", "b"), authfile)  # released: it works
    assert lookup("q.io", authfile=authfile) == Credential("a", "b")


def test_parse_creds() -> None:
    assert credentials.parse_creds("a:b:c") == Credential("a", "b:c")
    assert credentials.parse_creds("a") == Credential("a", "")
    with pytest.raises(InvalidArgument):
        credentials.parse_creds(":pw")
