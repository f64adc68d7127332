"""``kiln login`` against a real registry never writes credentials through a planted link.

Issue 14, class 5 (part): the auth file is replaced atomically through a temp file in its
own directory; an auth file or auth directory that is a symbolic link is refused with one
clear ``Error:`` line, and the file the link leads to is neither read nor changed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="needs docker-registry"),
    pytest.mark.timeout(180),
]

VICTIM = b'{"auths": {"victim.example": {"auth": "c2VjcmV0OnNlY3JldA=="}}}\n'


def _login(server, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir), KILN_ROOT=str(run_dir / "root"))
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME", "KILN_DEBUG"):
        env.pop(var, None)
    argv = [sys.executable, "-m", "kiln.cli.main", "login", "--tls-verify=false"]
    argv += [*extra, "-u", server.username, "--password-stdin", server.host]
    return subprocess.run(
        argv, env=env, input=server.password + "\n", capture_output=True, text=True, timeout=60
    )


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_ino, link, data)
    return out


def _refused(res: subprocess.CompletedProcess, server) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert "symbolic link" in lines[0] and "Traceback" not in res.stderr
    assert server.password not in res.stdout + res.stderr
    return lines[0]


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "auth.json").write_bytes(VICTIM)
    return tmp_path


def test_login_refuses_a_symlinked_auth_file(registry_basic, dirs):
    (dirs / "run" / "containers").mkdir(mode=0o700)
    os.symlink(dirs / "victim" / "auth.json", dirs / "run" / "containers" / "auth.json")
    before = _snapshot(dirs / "victim"), os.readlink(dirs / "run" / "containers" / "auth.json")
    _refused(_login(registry_basic, dirs / "run"), registry_basic)
    after = _snapshot(dirs / "victim"), os.readlink(dirs / "run" / "containers" / "auth.json")
    assert after == before
    assert os.listdir(dirs / "run" / "containers") == ["auth.json"]  # no temp file left


def test_login_refuses_a_symlinked_auth_directory(registry_basic, dirs):
    os.symlink(dirs / "victim", dirs / "run" / "containers")
    before = _snapshot(dirs / "victim")
    line = _refused(_login(registry_basic, dirs / "run"), registry_basic)
    assert "directory" in line
    assert _snapshot(dirs / "victim") == before


def test_login_refuses_an_explicit_authfile_link(registry_basic, dirs):
    os.symlink(dirs / "victim" / "auth.json", dirs / "link.json")
    before = _snapshot(dirs / "victim")
    _refused(
        _login(registry_basic, dirs / "run", "--authfile", str(dirs / "link.json")), registry_basic
    )
    assert _snapshot(dirs / "victim") == before


def test_login_writes_a_private_file_atomically(registry_basic, dirs):
    res = _login(registry_basic, dirs / "run")
    assert res.returncode == 0, res.stderr
    auth = dirs / "run" / "containers" / "auth.json"
    assert registry_basic.host in json.loads(auth.read_text())["auths"]
    assert stat.S_IMODE(os.stat(auth).st_mode) == 0o600
    with open(auth, "rb") as old:
        first = old.read()
        assert _login(registry_basic, dirs / "run").returncode == 0
        old.seek(0)
        assert old.read() == first  # a new file was renamed in, not rewritten in place
    assert os.listdir(auth.parent) == ["auth.json"]
