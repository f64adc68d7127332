"""Real git repositories for tests (local ``git``, fixed identities and dates).

    repo = make_repo(tmp / "srv" / "app.git", {"a.txt": "a", "bin/run": ("#!/bin/sh", 0o755)})
    commit(repo.with_suffix(".work"), {"b.txt": "b"}); push(repo, "main")

Serving them over HTTP: ``git_server.GitHttpServer``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
}


def git(cwd: Path | str, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    return out.stdout.strip()


def write_files(work: Path, files: dict) -> None:
    """``files``: path -> text, (text, mode), or ("->", link target) for a symlink."""
    for rel, value in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, tuple) and value[0] == "->":
            if path.is_symlink() or path.exists():
                path.unlink()
            path.symlink_to(value[1])
            continue
        text, mode = value if isinstance(value, tuple) else (value, 0o644)
        path.write_text(text)
        path.chmod(mode)


def commit(work: Path, files: dict, message: str = "c") -> str:
    write_files(work, files)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


def make_repo(bare: Path, files: dict, *, branch: str = "main") -> Path:
    """A bare repository at ``bare`` whose ``branch`` holds ``files`` (one commit); the
    working clone it was made from is ``bare.with_suffix('.work')``."""
    bare = Path(bare).absolute()
    work = bare.with_suffix(".work")
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", branch)
    commit(work, files)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(work.parent, "clone", "-q", "--bare", str(work), str(bare))
    git(work, "remote", "add", "origin", str(bare))
    # served over dumb-less smart http: allow it, and fetching any commit by its SHA
    git(bare, "config", "http.receivepack", "true")
    git(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
    return bare


def push(bare: Path, *refs: str) -> None:
    git(Path(bare).absolute().with_suffix(".work"), "push", "-q", "origin", *refs)


def have_git() -> bool:
    return shutil.which("git") is not None
