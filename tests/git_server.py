"""Real git repositories for tests, and a tiny HTTP server for them (``git http-backend`` as
CGI on 127.0.0.1), so ``ADD <git URL>`` and git build contexts meet a real git server.

    repo = make_repo(tmp / "srv" / "app.git", {"a.txt": "a", "bin/run": ("#!/bin/sh", 0o755)})
    with GitHttpServer(tmp / "srv") as srv:
        url = srv.url("app.git")           # http://127.0.0.1:PORT/app.git
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
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


class _Handler(http.server.BaseHTTPRequestHandler):
    root = ""
    log: list[str]

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        if self.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        env["CONTENT_LENGTH"] = str(len(body))
        proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                              capture_output=True, timeout=60)  # fmt: skip
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()


class GitHttpServer:
    """Serves the bare repositories under ``root`` over smart HTTP on 127.0.0.1."""

    def __init__(self, root: Path | str):
        handler = type("Handler", (_Handler,), {"root": str(root)})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests  # type: ignore[attr-defined]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def have_git() -> bool:
    return shutil.which("git") is not None
