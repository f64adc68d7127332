"""login/logout as podman keeps credentials: ``--get-login``, credential helpers named in
the auth file (store, erase), ``logout --all``, keys that name an image, and logins at once."""

from __future__ import annotations

import json
import os
import select
import threading

import pytest
from click.testing import CliRunner

from auth_files import basic_auth, install_credential_helper, write_json
from kiln.cli.main import cli
from kiln.errors import InvalidArgument, NotFound
from kiln.registry import credentials
from kiln.registry.credentials import Credential
from kiln.registry.login import get_login, logout
from registry_env import isolate_registry_env


@pytest.fixture
def env(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    os.makedirs(tmp_path / "home")
    return tmp_path


@pytest.fixture
def helper(env, monkeypatch):
    """``docker-credential-test``: logs each call (action and stdin) and knows helper.io."""
    install_credential_helper(
        env / "bin",
        "test",
        'input=$(cat)\nprintf "%s %s\\n" "$1" "$input" >> "$(dirname "$0")/calls"\n'
        'case "$1 $input" in\n'
        '  "get helper.io") echo \'{"ServerURL":"helper.io","Username":"hu","Secret":"hs"}\' ;;\n'
        '  "erase helper.io"|store*) ;;\n'
        "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac",
        monkeypatch,
    )
    return env / "bin" / "calls"


def _read(path) -> dict:
    with open(path) as f:
        return json.load(f)


def test_get_login_prints_the_stored_username_most_specific_first(env, helper) -> None:
    path = write_json(
        env / "auth.json",
        {
            "auths": {
                "r.io:5000": basic_auth("alice", "a"),
                "r.io:5000/ns": basic_auth("bob", "b"),
            },
            "credHelpers": {"helper.io": "test"},
        },
    )
    runner = CliRunner()
    for registry, user in [("r.io:5000", "alice"), ("r.io:5000/ns", "bob"), ("helper.io", "hu")]:
        res = runner.invoke(cli, ["login", "--authfile", path, "--get-login", registry])
        assert (res.exit_code, res.stdout) == (0, user + "\n"), res.output
    res = runner.invoke(cli, ["login", "--authfile", path, "--get-login", "other.io"])
    assert res.exit_code == 125
    assert "not logged into other.io" in res.output
    assert "hs" not in res.output and "Traceback" not in res.output


def test_get_login_of_an_identity_token_alone_is_not_logged_in(env) -> None:
    """podman: no username stored, ``not logged into``; kiln printed an empty line."""
    path = write_json(env / "auth.json", {"auths": {"tok.io": {"identitytoken": "refresh-1"}}})
    res = CliRunner().invoke(cli, ["login", "--authfile", path, "--get-login", "tok.io"])
    assert res.exit_code == 125 and "not logged into tok.io" in res.output
    assert "refresh-1" not in res.output


def test_login_and_logout_use_the_credential_helper_the_auth_file_names(env, helper) -> None:
    path = write_json(
        env / "auth.json",
        {"auths": {"r.io": basic_auth("alice", "a")}, "credHelpers": {"helper.io": "test"}},
    )
    before = _read(path)
    credentials.store_credential("helper.io", Credential("hu", "new"), path)
    assert _read(path) == before  # the helper keeps it, not the file
    credentials.store_credential("helper.io/ns", Credential("nu", "np"), path)
    assert _read(path)["auths"]["helper.io/ns"] == basic_auth("nu", "np")  # a repository key
    assert credentials.remove_credential("helper.io", path) == ["helper.io"]
    calls = helper.read_text().splitlines()
    assert calls == [
        'store {"ServerURL": "helper.io", "Username": "hu", "Secret": "new"}',
        "erase helper.io",
    ]


def test_logout_all_erases_what_the_helpers_keep_and_drops_them(env, helper) -> None:
    path = write_json(
        env / "auth.json",
        {"auths": {"r.io": basic_auth("alice", "a")}, "credHelpers": {"helper.io": "test"}},
    )
    assert sorted(logout(None, path, all=True)) == ["helper.io", "r.io"]
    assert helper.read_text().splitlines() == ["erase helper.io"]
    assert _read(path) == {"auths": {}}


@pytest.mark.parametrize("key", ["r.io:5000/ns/app:1.0", "r.io/app@sha256:" + "a" * 64])
def test_a_key_naming_an_image_is_refused(env, key) -> None:
    path = write_json(env / "auth.json", {"auths": {"r.io:5000/ns/app": basic_auth("a", "b")}})
    before = _read(path)
    with pytest.raises(InvalidArgument, match="contains tag or digest"):
        logout(key, path)
    with pytest.raises(InvalidArgument, match="contains tag or digest"):
        get_login(key, path)
    assert _read(path) == before


def test_logins_at_once_lose_no_entry(env) -> None:
    path = str(env / "auth.json")
    keys = [f"r{t}-{n}.io" for t in range(8) for n in range(15)]

    def store(mine: list[str]) -> None:
        for key in mine:
            credentials.store_credential(key, Credential("u", key), path)

    threads = [threading.Thread(target=store, args=(keys[t::8],)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(_read(path)["auths"]) == sorted(keys)


def test_logout_without_an_auth_directory_makes_none(env) -> None:
    path = env / "new" / "dir" / "auth.json"
    assert logout(None, str(path), all=True) == []
    with pytest.raises(NotFound, match="not logged into r.io"):
        logout("r.io", str(path))
    assert not (env / "new").exists()


@pytest.fixture
def search_conf(env, monkeypatch):
    def write(registries: list[str]) -> None:
        conf = env / "registries.conf"
        conf.write_text(f"unqualified-search-registries = {json.dumps(registries)}\n")
        monkeypatch.setenv("KILN_REGISTRIES_CONF", str(conf))

    return write


def test_login_and_logout_without_a_registry_use_the_first_search_registry(
    env, search_conf
) -> None:
    path = write_json(env / "auth.json", {"auths": {"first.io:5000": basic_auth("alice", "a")}})
    search_conf(["first.io:5000", "second.io"])
    runner = CliRunner()
    res = runner.invoke(cli, ["login", "--authfile", path, "--get-login"])
    assert (res.exit_code, res.stdout) == (0, "alice\n"), res.output
    res = runner.invoke(cli, ["logout", "--authfile", path])
    assert (res.exit_code, res.stdout) == (0, "Removed login credentials for first.io:5000\n")
    assert _read(path)["auths"] == {}
    search_conf([])
    res = runner.invoke(cli, ["logout", "--authfile", path])
    assert res.exit_code == 125
    assert "no registries found in registries.conf, a registry must be provided" in res.output


def test_a_hanging_helper_is_stopped_with_all_it_started(env, monkeypatch) -> None:
    """The helper (a shell script) leaves a child behind holding a FIFO open: when the call
    gives up, that child is gone too (the FIFO reaches end of file)."""
    from kiln.registry import credential_helpers

    fifo = env / "alive"
    os.mkfifo(fifo)
    body = f'{{ echo started; exec sleep 300; }} > "{fifo}" &\nwait'
    install_credential_helper(env / "bin", "hang", body, monkeypatch)
    monkeypatch.setattr(credential_helpers, "HELPER_TIMEOUT", 2.0)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_json(env / "auth.json", {"credHelpers": {"r.io": "hang"}})
        with pytest.raises(InvalidArgument, match="docker-credential-hang did not answer get"):
            credentials.lookup("r.io", authfile=str(env / "auth.json"))
        while True:  # bounded: every wait below is
            ready, _, _ = select.select([reader], [], [], 30)
            assert ready, "the helper's child still holds the FIFO open"
            if os.read(reader, 64) == b"":
                break
    finally:
        os.close(reader)


@pytest.mark.parametrize(
    ("stdin", "password"),
    [
        ("secret\n", "secret"),
        ("secret", "secret"),
        ("secret\r\n", "secret"),
        ("sec\nret\n", "secret"),  # podman joins the lines with nothing between
        ("sec\r\nret\r\n\n", "secret"),
        ("with space \n", "with space "),
        ("", ""),
    ],
)
def test_password_stdin_is_all_of_stdin_as_podman_reads_it(stdin, password) -> None:
    import io

    from kiln.cli.commands.login import password_from_stdin

    assert password_from_stdin(io.StringIO(stdin)) == password


def test_password_stdin_that_is_not_a_password_is_refused_unread(env) -> None:
    res = CliRunner().invoke(
        cli, ["login", "-u", "u", "--password-stdin", "r.io"], input="x" * (2 << 20)
    )
    assert res.exit_code != 0 and "more than 1 MiB" in res.output
    assert "Traceback" not in res.output and not os.path.exists(env / "run" / "containers")


@pytest.mark.parametrize(
    ("args", "stdin", "said"),
    [
        (["--password-stdin"], "", "--password-stdin read no password"),
        (["--password-stdin"], "\n", "--password-stdin read no password"),
        (["-p", ""], "", "no password given"),  # podman: empty is no password (it asks)
    ],
)
def test_an_empty_password_is_no_login(env, args, stdin, said) -> None:
    # `echo "$UNSET" | kiln login --password-stdin` must not store a login with no password
    res = CliRunner().invoke(cli, ["login", "-u", "u", *args, "127.0.0.1:1"], input=stdin)
    assert res.exit_code == 125 and said in res.stderr, res.output
    assert "Traceback" not in res.output and not os.path.exists(env / "run" / "containers")


def _helper_printing(env, monkeypatch, name: str, body: str) -> str:
    """``docker-credential-<name>`` running ``body`` (sh); an auth file naming it for r.io."""
    install_credential_helper(env / "bin", name, body, monkeypatch)
    return write_json(env / f"auth-{name}.json", {"credHelpers": {"r.io": name}})


@pytest.mark.parametrize(
    ("name", "body", "said"),
    [
        ("flood", "exec head -c 300000000 /dev/zero", "printed more than 1048576 bytes"),
        ("silent", "exit 0", "printed nothing"),
        ("typed", 'echo \'{"Username": ["u"], "Secret": {"s": 1}}\'', "must be strings"),
    ],
)
def test_a_helper_answer_that_is_no_credential_is_one_error(env, monkeypatch, name, body, said):
    """A helper that prints hundreds of MB is stopped once it passed what a credential can
    be (it was all read into memory), one that prints nothing or a Username that is no
    string is refused with what it did (a list was the username, printed by --get-login)."""
    path = _helper_printing(env, monkeypatch, name, body)
    with pytest.raises(InvalidArgument, match=said):
        get_login("r.io", authfile=path)


@pytest.mark.parametrize("helper_name", ["../../bin/sh", "a\x00b"])
def test_a_helper_name_that_is_no_name_is_refused(env, helper_name):
    """credHelpers names a program docker-credential-<name> on PATH: a name with a slash
    (a path from the current directory) or a NUL (ValueError, a traceback) is refused."""
    path = write_json(env / "auth.json", {"credHelpers": {"r.io": helper_name}})
    with pytest.raises(InvalidArgument, match="is no name"):
        get_login("r.io", authfile=path)


@pytest.mark.parametrize("registry", ["r.io/../x", "../x", "r.io/a b", "r.io/A"])
def test_a_registry_that_is_no_name_is_refused_before_anything(env, registry):
    """A login, logout or --get-login of what is no registry or repository name (podman
    parses it as a reference) fails at once: '../x' was an unexpected UnicodeError."""
    runner = CliRunner()
    path = write_json(env / "auth.json", {})
    for args in (["login", "-u", "u", "-p", "p"], ["logout"], ["login", "--get-login"]):
        res = runner.invoke(cli, [*args, "--authfile", path, registry])
        assert res.exit_code == 125, res.output
        assert "is no registry name" in res.output, res.output
    with open(path) as f:
        assert json.load(f) == {}


def test_an_auth_file_whose_directory_cannot_be_made_is_one_error(env):
    """Storing a login in an auth file under a regular file (or a directory kiln may not
    create) says where it could not write: it was an 'unexpected NotADirectoryError'."""
    from kiln.errors import KilnError

    (env / "afile").write_text("")
    target = env / "afile" / "d" / "a.json"
    with pytest.raises(KilnError, match=f"writing {target}: "):
        credentials.store_credential("r.io", Credential("u", "p"), str(target))


def test_a_helper_that_cannot_be_run_is_one_error(env, monkeypatch):
    """A docker-credential-<name> on PATH that is not executable: an error naming it (it
    was an 'unexpected PermissionError')."""
    path = _helper_printing(env, monkeypatch, "noexec", "exit 0")
    (env / "bin" / "docker-credential-noexec").chmod(0o644)
    with pytest.raises(InvalidArgument, match="docker-credential-noexec cannot be run"):
        get_login("r.io", authfile=path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("kind", "said"),
    [("fifo", "is a FIFO"), ("zero", "is a character device"), ("huge", "is larger than"),
     ("latin1", "is not valid JSON")],
)  # fmt: skip
def test_an_auth_file_that_is_no_auth_file_is_one_error(env, kind, said):
    """Every pull reads the auth files: a FIFO there blocked it for ever, a link to
    /dev/zero read until memory ran out, bytes not UTF-8 were 'unexpected
    UnicodeDecodeError'. A link to a real file is still read (dotfiles keep them so)."""
    path = env / "auth.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(credentials.MAX_AUTH_FILE_BYTES + 1)
    else:
        path.write_bytes(b'{"auths": {"r.io": {"auth": "\xe9"}}}')
    with pytest.raises(InvalidArgument, match=said):
        get_login("r.io", authfile=str(path))
    real = write_json(env / "real.json", {"auths": {"r.io": basic_auth("lu", "lp")}})
    (env / "link.json").symlink_to(real)
    assert get_login("r.io", authfile=str(env / "link.json")) == "lu"
