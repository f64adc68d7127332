"""``kiln login``/``logout`` never write credentials through a symbolic link (issue 14, class 5).

The auth file is replaced atomically through a temp file created ``O_EXCL|O_NOFOLLOW`` in
its own directory; an auth file or auth directory that is a symbolic link (planted by
someone else, e.g. in a shared runtime directory) is refused with a clear error, before
anything it leads to is read or written.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from kiln.errors import InvalidArgument
from kiln.registry import credentials
from kiln.registry.credentials import Credential

SECRET = b"root:$6$not-an-auth-file:19000:0:99999:7:::\n"


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "shadow").write_bytes(SECRET)
    return tmp_path


def _state(root) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            data = Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_ino, link, data)
    return out


@pytest.mark.parametrize("op", ["store", "remove"])
def test_a_symlinked_auth_file_is_refused(run_dir, op):
    (run_dir / "run" / "containers").mkdir()
    os.symlink(run_dir / "victim" / "shadow", run_dir / "run" / "containers" / "auth.json")
    before = _state(run_dir)
    with pytest.raises(InvalidArgument, match=r"auth file .*auth\.json is a symbolic link") as e:
        if op == "store":
            credentials.store_credential("r.io", Credential("u", "p"))
        else:
            credentials.remove_credential(None)
    assert "root:" not in str(e.value)  # nothing of the link's target was read into the error
    assert _state(run_dir) == before


def test_a_symlinked_auth_directory_is_refused(run_dir):
    os.symlink(run_dir / "victim", run_dir / "run" / "containers")
    before = _state(run_dir)
    with pytest.raises(InvalidArgument, match="auth file directory .* is a symbolic link"):
        credentials.store_credential("r.io", Credential("u", "p"))
    assert _state(run_dir) == before


def test_an_explicit_authfile_link_is_refused_too(run_dir):
    os.symlink(run_dir / "victim" / "shadow", run_dir / "auth.json")
    before = _state(run_dir)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        credentials.store_credential("r.io", Credential("u", "p"), str(run_dir / "auth.json"))
    assert _state(run_dir) == before


def test_auth_file_is_replaced_atomically_and_privately(run_dir):
    path = credentials.store_credential("r.io", Credential("u", "p"))
    assert path == str(run_dir / "run" / "containers" / "auth.json")
    with open(path, "rb") as old:
        first = old.read()
        credentials.store_credential("s.io", Credential("v", "q"))
        old.seek(0)
        assert old.read() == first  # a new file was renamed in, not rewritten in place
    auths = json.loads(Path(path).read_text())["auths"]
    assert base64.b64decode(auths["s.io"]["auth"]) == b"v:q" and "r.io" in auths
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert os.listdir(os.path.dirname(path)) == ["auth.json"]
