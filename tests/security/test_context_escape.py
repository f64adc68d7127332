"""Hostile build contexts: symlinks that point out of the context never lead COPY/ADD out.

Every case builds a context beside a "victim" directory of canary files and runs a real
``kiln build`` (command line, uploaded through the API, on stdin, or from an http URL).
A case passes when the build either refuses with one clear ``Error:`` line (no
traceback) or succeeds with symlinks copied as links, and in both cases:

- no layer of the image holds a canary byte, and no checksum kiln cached for the context
  (the COPY cache key) is the digest of a victim file;
- the victim directory's listing, contents, modes and mtimes are unchanged.

Reference behaviour, checked with buildah on this machine (BuildKit cannot run here; its
Dockerfile frontend asks for the same: sources followed, resolved under the context root):
a symlink named as a COPY source is followed as if the context were ``/`` (``l ->
../victim/secret`` copies ``<context>/victim/secret``; ``l -> /abs/host/dir`` is "no such
file"; ``COPY l*`` fails on such a link too); a symlink met while copying a directory is
copied as a link. The API's ``dockerfile`` parameter names a file inside the uploaded
context (an absolute name is taken from the context's root, never the host's; 400
otherwise); the command line's ``-f`` may name any file, as in podman.

``escaped_on_main`` marks the cases that read a victim file before the fix (into the image,
the cache key, or, for the ignore-file cases, the build's ignore patterns).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from file_server import serving

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay mounts)"),
]

CANARY = b"KILN-CANARY-" + secrets.token_hex(8).encode()
TIMEOUT = 120


# -- the victim -----------------------------------------------------------------------------


def _evil_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("x")
        data = CANARY + b"-in-tar"
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_victim(path: Path) -> None:
    (path / "sub" / "deeper").mkdir(parents=True)
    (path / "secret").write_bytes(CANARY + b"-secret\n")
    (path / "sub" / "f").write_bytes(CANARY + b"-sub\n")
    (path / "sub" / "deeper" / "g").write_bytes(CANARY + b"-deeper\n")
    (path / "Dockerfile").write_bytes(b"FROM scratch\n" + CANARY + b" leaked-line\n")
    (path / "ignore").write_bytes(b"*\n")
    (path / "evil.tar").write_bytes(_evil_tar())


def tree_state(path: Path) -> dict[str, tuple]:
    """Relative path -> (type, mode, size, mtime_ns, content sha or link target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if os.path.islink(full):
                what = os.readlink(full)
            elif os.path.isfile(full):
                what = hashlib.sha256(Path(full).read_bytes()).hexdigest()
            else:
                what = ""
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_size, st.st_mtime_ns, what)
    return out


def victim_digests(path: Path) -> set[str]:
    return {
        "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
        for p in path.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


# -- the environment ------------------------------------------------------------------------


@dataclass
class Env:
    top: Path
    victim: Path
    root: Path  # the kiln store

    def kiln(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("SOURCE_DATE_EPOCH", None)
        return subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", "--root", str(self.root), *args],
            input=stdin, capture_output=True, env=env, timeout=TIMEOUT,
        )  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    top = tmp_path_factory.mktemp("escape")
    victim = top / "victim"
    victim.mkdir()
    make_victim(victim)
    return Env(top, victim, tmp_path_factory.mktemp("store") / "root")


def image_layers(root: Path, ref: str) -> list[bytes]:
    from image_probe import kiln_image, open_decompressed

    probe = kiln_image(str(root), ref)
    out = []
    for opener in probe.layer_openers:
        with opener() as raw:
            out.append(open_decompressed(raw).read())
    return out


def image_files(root: Path, ref: str) -> dict:
    from image_probe import kiln_image

    return kiln_image(str(root), ref).files()


def image_exists(root: Path, ref: str) -> bool:
    from kiln.errors import NotFound
    from kiln.store import Store

    store = Store.open(str(root))
    try:
        store.resolve_image(ref)
        return True
    except NotFound:
        return False
    finally:
        store.close()


def cached_context_digests(root: Path, ctx: Path) -> set[str]:
    from kiln.store import Store

    store = Store.open(str(root))
    try:
        return {digest for _key, digest in store.get_checksums(str(ctx)).values()}
    finally:
        store.close()


def assert_contained(env: Env, ctx: Path, ref: str, before: dict, victim_before: dict) -> None:
    assert tree_state(env.victim) == victim_before, "the victim directory changed"
    assert sorted(os.listdir(env.top)) == before["top"], "something appeared beside the context"
    if image_exists(env.root, ref):
        for layer in image_layers(env.root, ref):
            assert CANARY not in layer, f"{ref}: a victim file was copied into the image"
    leaked = cached_context_digests(env.root, ctx) & victim_digests(env.victim)
    assert not leaked, "the COPY cache key hashed a file outside the context"


# -- cases ----------------------------------------------------------------------------------

LINK = "link"
DIR = "dir"


@dataclass
class Case:
    name: str
    dockerfile: str
    files: dict[str, object] = field(default_factory=dict)  # rel -> bytes | (LINK, t) | (DIR,)
    ignore: bool = False  # add a .dockerignore (the context is then staged)
    refused: bool = False  # the build must fail with one clear error
    check: Callable[[dict], None] | None = None  # on the image's files when built
    escaped_on_main: bool = False  # documents which cases read a victim file before the fix

    def make(self, ctx: Path, victim: Path) -> None:
        ctx.mkdir()
        (ctx / "Containerfile").write_text(self.dockerfile)
        (ctx / "a").write_bytes(b"plain file\n")
        if self.ignore:
            (ctx / ".dockerignore").write_text("*.md\n")
        for rel, what in self.files.items():
            path = ctx / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(what, bytes):
                path.write_bytes(what)
            elif what[0] == DIR:
                path.mkdir(exist_ok=True)
            else:
                path.symlink_to(str(what[1]).replace("{victim}", str(victim)))


def link(target: str) -> tuple[str, str]:
    return (LINK, target)


def is_link(path: str, target: str | None = None) -> Callable[[dict], None]:
    def check(files: dict) -> None:
        entry = files.get(path)
        assert entry is not None and entry.type == "symlink", (path, entry)
        if target is not None:
            assert entry.target == target, (path, entry.target)

    return check


def all_of(*checks: Callable[[dict], None]) -> Callable[[dict], None]:
    def check(files: dict) -> None:
        for c in checks:
            c(files)

    return check


def content_is(path: str, sha_of: bytes) -> Callable[[dict], None]:
    def check(files: dict) -> None:
        entry = files.get(path)
        assert entry is not None and entry.type == "file", (path, entry)
        assert entry.sha256 == hashlib.sha256(sha_of).hexdigest(), path

    return check


ABS_DIR = link("{victim}")
REL_DIR = link("../victim")
ABS_FILE = link("{victim}/secret")
REL_FILE = link("../victim/secret")
INSIDE = b"in-context look-alike\n"

CASES = [
    # a symlink on the way to a source
    Case(
        "abs-dir-link-then-file/ignore",
        "FROM scratch\nCOPY ldir/secret /out/\n",
        {"ldir": ABS_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "abs-dir-link-then-file",
        "FROM scratch\nCOPY ldir/secret /out/\n",
        {"ldir": ABS_DIR},
        refused=True,
    ),
    Case(
        "rel-dir-link-then-file/ignore",
        "FROM scratch\nCOPY ldir/secret /out/\n",
        {"ldir": REL_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "abs-dir-link/exclude",
        "FROM scratch\nCOPY --exclude=*.md ldir/secret /out/\n",
        {"ldir": ABS_DIR},
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "abs-dir-link/wildcard/ignore",
        "FROM scratch\nCOPY ldir/* /out/\n",
        {"ldir": ABS_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "rel-dir-link/wildcard/exclude",
        "FROM scratch\nCOPY --exclude=x ldir/s* /out/\n",
        {"ldir": REL_DIR},
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "abs-dir-link/dir-walk/ignore",
        "FROM scratch\nCOPY ldir/sub /out/\n",
        {"ldir": ABS_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "rel-dir-link/dir-slash/ignore",
        "FROM scratch\nCOPY ldir/sub/ /out/\n",
        {"ldir": REL_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "chain-of-links/ignore",
        "FROM scratch\nCOPY l1/secret /out/\n",
        {"l1": link("l2"), "l2": link("l3"), "l3": REL_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "link-to-root/abs-path-below/ignore",
        "FROM scratch\nCOPY lroot{victim}/secret /out/\n",
        {"lroot": link("/")},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "link-to-parent/ignore",
        "FROM scratch\nCOPY lup/victim/secret /out/\n",
        {"lup": link("..")},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "nested-dir-link/ignore",
        "FROM scratch\nCOPY a1/b/c/l/secret /out/\n",
        {"a1/b/c/l": link("../../../../victim")},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "wildcard-through-nested-link/ignore",
        "FROM scratch\nCOPY d/*/secret /out/\n",
        {"d/l": link("../../victim")},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    # a symlink named as the source: followed inside the context only
    Case("abs-file-link-named", "FROM scratch\nCOPY lf /out/\n", {"lf": ABS_FILE}, refused=True),
    Case(
        "abs-file-link-named/ignore",
        "FROM scratch\nCOPY lf /out/\n",
        {"lf": ABS_FILE},
        ignore=True,
        refused=True,
    ),
    Case(
        "rel-file-link-named/ignore",
        "FROM scratch\nCOPY lf /out/\n",
        {"lf": REL_FILE},
        ignore=True,
        refused=True,
    ),
    Case(
        "abs-dir-link-named/ignore",
        "FROM scratch\nCOPY ldir /out/\n",
        {"ldir": ABS_DIR},
        ignore=True,
        refused=True,
    ),
    Case(
        "wildcard-matching-links/ignore",
        "FROM scratch\nCOPY l* /out/\n",
        {"ldir": ABS_DIR, "lf": REL_FILE},
        ignore=True,
        refused=True,
    ),
    Case(
        "rel-file-link-clamped-in-context",
        "FROM scratch\nCOPY lf /out/\n",
        {"lf": REL_FILE, "victim/secret": INSIDE},
        check=content_is("/out/lf", INSIDE),
    ),
    Case(
        "rel-file-link-clamped-in-context/ignore",
        "FROM scratch\nCOPY lf /out/\n",
        {"lf": REL_FILE, "victim/secret": INSIDE},
        ignore=True,
        check=content_is("/out/lf", INSIDE),
    ),
    Case(
        "abs-link-resolved-in-context/ignore",
        "FROM scratch\nCOPY lf /out/\n",
        {"lf": link("/inner/x"), "inner/x": INSIDE},
        ignore=True,
        check=content_is("/out/lf", INSIDE),
    ),
    Case(
        "in-context-dir-link-followed/ignore",
        "FROM scratch\nCOPY lin /out/\n",
        {"lin": link("real"), "real/x": INSIDE, "real/out": ABS_DIR},
        ignore=True,
        check=all_of(content_is("/out/x", INSIDE), is_link("/out/out")),
    ),
    # a directory walk copies links as links
    Case(
        "copy-dot/ignore",
        "FROM scratch\nCOPY . /out/\n",
        {"ldir": ABS_DIR, "lf": REL_FILE, "n/l": link("../../victim")},
        ignore=True,
        check=all_of(
            is_link("/out/ldir"),
            is_link("/out/lf", "../victim/secret"),
            is_link("/out/n/l", "../../victim"),
        ),
    ),
    Case(
        "copy-dot",
        "FROM scratch\nCOPY . /out/\n",
        {"ldir": ABS_DIR, "lf": ABS_FILE},
        check=all_of(is_link("/out/ldir"), is_link("/out/lf")),
    ),
    Case(
        "copy-dir-slash/exclude",
        "FROM scratch\nCOPY --exclude=*.md d/ /out/\n",
        {"d/x/l": ABS_FILE, "d/y": link("../../victim"), "d/z": b"z\n"},
        check=all_of(is_link("/out/x/l"), is_link("/out/y", "../../victim")),
    ),
    Case(
        "copy-dir-with-dir-link/ignore",
        "FROM scratch\nCOPY d /out/\n",
        {"d/sub": link("../../victim/sub"), "d/k": b"k\n"},
        ignore=True,
        check=is_link("/out/sub", "../../victim/sub"),
    ),
    Case(
        "wildcard-dir-walk/ignore",
        "FROM scratch\nCOPY d* /out/\n",
        {"d/l": ABS_DIR, "d/k": b"k\n"},
        ignore=True,
        check=is_link("/out/l"),
    ),
    # ADD
    Case(
        "add-through-dir-link/ignore",
        "FROM scratch\nADD ldir/secret /out/\n",
        {"ldir": ABS_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "add-tar-link-out",
        "FROM scratch\nADD lt /out/\n",
        {"lt": link("../victim/evil.tar")},
        refused=True,
    ),
    Case(
        "add-tar-through-dir-link/ignore",
        "FROM scratch\nADD ldir/evil.tar /out/\n",
        {"ldir": ABS_DIR},
        ignore=True,
        refused=True,
        escaped_on_main=True,
    ),
    Case(
        "add-dot/ignore",
        "FROM scratch\nADD . /out/\n",
        {"ldir": ABS_DIR},
        ignore=True,
        check=is_link("/out/ldir"),
    ),
    # ignore files that are links out are not read from the host
    Case(
        "dockerignore-link-out",
        "FROM scratch\nCOPY a /out/\n",
        {".dockerignore": link("../victim/ignore")},
        check=content_is("/out/a", b"plain file\n"),
        escaped_on_main=True,
    ),
    Case(
        "containerignore-abs-link-out",
        "FROM scratch\nCOPY a /out/\n",
        {".containerignore": link("{victim}/ignore")},
        check=content_is("/out/a", b"plain file\n"),
        escaped_on_main=True,
    ),
]


def _case_id(case: Case) -> str:
    return case.name


def run_case(env: Env, case: Case, build: Callable[[Path, str], subprocess.CompletedProcess]):
    slug = case.name.replace("/", "-")
    ctx = env.top / f"ctx-{slug}"
    case.make(ctx, env.victim)
    ref = f"localhost/esc-{slug}:latest"
    victim_before = tree_state(env.victim)
    before = {"top": sorted(os.listdir(env.top))}
    proc = build(ctx, ref)
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert CANARY.decode() not in err + proc.stdout.decode(errors="replace")
    assert_contained(env, ctx, ref, before, victim_before)  # first: the escape itself
    if case.refused:
        assert proc.returncode != 0, f"{case.name}: built, expected a refusal"
        # the step refused it (not a context that never arrived: a download that failed
        # would be a refusal too, for the wrong reason)
        assert re.match(r"Error: Containerfile:\d+: ", err.strip().splitlines()[-1]), err
        assert not image_exists(env.root, ref)
    else:
        assert proc.returncode == 0, err
        if case.check is not None:
            case.check(image_files(env.root, ref))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cli_context(env, case):
    run_case(env, case, lambda ctx, ref: env.kiln("build", "-q", "-t", ref, str(ctx)))


def _context_tar(ctx: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for path in sorted(ctx.rglob("*")):
            tf.add(str(path), str(path.relative_to(ctx)), recursive=False)
    return buf.getvalue()


STDIN_CASES = [c for c in CASES if c.escaped_on_main or c.name.startswith("copy-dot")]


@pytest.mark.parametrize("case", STDIN_CASES, ids=_case_id)
def test_stdin_context_tar(env, case):
    def build(ctx: Path, ref: str) -> subprocess.CompletedProcess:
        return env.kiln("build", "-q", "-t", ref, "-", stdin=gzip.compress(_context_tar(ctx)))

    # the tar holds the same links (absolute ones still name the victim's host path)
    case = Case(case.name + "/stdin", case.dockerfile, case.files, case.ignore, case.refused,
                case.check)  # fmt: skip
    run_case(env, case, build)


@pytest.fixture(scope="module")
def http_www(tmp_path_factory):
    """A directory served over HTTP for the module: (the directory, its base URL)."""
    www = tmp_path_factory.mktemp("www")
    with serving(www) as url:
        yield www, url


URL_CASES = [c for c in CASES if c.name in (
    "abs-dir-link-then-file/ignore", "rel-dir-link/wildcard/exclude", "chain-of-links/ignore",
    "copy-dot/ignore", "add-tar-through-dir-link/ignore", "dockerignore-link-out",
)]  # fmt: skip


@pytest.mark.parametrize("case", URL_CASES, ids=_case_id)
def test_http_context_tar(env, http_www, case):
    www, url = http_www

    def build(ctx: Path, ref: str) -> subprocess.CompletedProcess:
        (www / f"{ctx.name}.tar").write_bytes(_context_tar(ctx))
        return env.kiln("build", "-q", "-t", ref, f"{url}/{ctx.name}.tar")

    case = Case(case.name + "/http", case.dockerfile, case.files, case.ignore, case.refused,
                case.check)  # fmt: skip
    run_case(env, case, build)


def test_cache_key_ignores_what_links_point_at(env):
    """``COPY .`` with links out: changing the victim behind them changes nothing."""
    ctx = env.top / "ctx-cache"
    Case("cache", "FROM scratch\nCOPY . /out/\n", {"ldir": ABS_DIR, "lf": REL_FILE}).make(
        ctx, env.victim
    )
    first = env.kiln("build", "-q", "-t", "localhost/esc-cache", str(ctx))
    assert first.returncode == 0, first.stderr
    extra = env.victim / "sub" / "later"
    extra.write_bytes(CANARY + b"-later\n")
    try:
        again = env.kiln("build", "-q", "-t", "localhost/esc-cache", str(ctx))
    finally:
        extra.unlink()
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # the same image: the cache key did not move
    assert not cached_context_digests(env.root, ctx) & victim_digests(env.victim)


def test_dockerfile_outside_the_context_is_fine_on_the_command_line(env):
    """podman's rule: ``-f`` may name any file; the API is stricter (see the API tests)."""
    ctx = env.top / "ctx-f-outside"
    ctx.mkdir()
    (ctx / "a").write_bytes(b"a\n")
    other = env.top / "elsewhere"
    other.mkdir()
    (other / "Containerfile").write_text("FROM scratch\nCOPY a /a\n")
    proc = env.kiln("build", "-q", "-t", "localhost/esc-f", "-f", str(other / "Containerfile"),
                    str(ctx))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "/a" in image_files(env.root, "localhost/esc-f")


@pytest.fixture(scope="module")
def busybox(env, tmp_path_factory) -> str:
    """A busybox image in the module's store, for RUN --mount cases."""
    import shutil

    from fixtures_images import make_busybox_rootfs

    if shutil.which("runc") is None:
        pytest.skip("needs runc")
    tar = make_busybox_rootfs(str(tmp_path_factory.mktemp("bb") / "rootfs.tar"))
    proc = env.kiln("import", tar, "localhost/esc-busybox:latest")
    assert proc.returncode == 0, proc.stderr
    return "localhost/esc-busybox:latest"


RUN_MOUNT_CASES = [
    ("dir-link-abs", "source=ldir", {"ldir": ABS_DIR}),
    ("dir-link-rel", "source=ldir,rw", {"ldir": REL_DIR}),
    ("file-link", "source=lf", {"lf": ABS_FILE}),
    ("through-link", "source=a1/l/sub", {"a1/l": link("../../victim")}),
]


@pytest.mark.parametrize(("name", "opts", "files"), RUN_MOUNT_CASES,
                         ids=[c[0] for c in RUN_MOUNT_CASES])  # fmt: skip
def test_run_mount_bind_source_stays_in_the_context(env, busybox, name, opts, files):
    """RUN --mount=type=bind resolves its source in the context as COPY does: a link out is
    "not found", never the host directory it names."""
    dockerfile = (
        f"FROM {busybox}\nRUN --mount=type=bind,{opts},target=/m "
        "cat /m /m/secret /m/f > /out 2>/dev/null; true\n"
    )
    case = Case(f"run-mount-{name}", dockerfile, files, refused=True)
    run_case(env, case, lambda ctx, ref: env.kiln("build", "-q", "-t", ref, str(ctx)))


# -- the API: uploaded contexts and the dockerfile parameter ---------------------------------


def _request(sock: str, method: str, target: str, body: bytes = b"", ctype: str = "",
             ) -> tuple[int, bytes]:  # fmt: skip
    """One HTTP/1.1 request over the unix socket; (status, body) with chunks joined."""
    import http.client

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(TIMEOUT)
            self.sock.connect(sock)

    conn = Conn("d", timeout=TIMEOUT)
    try:
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def api(env, tmp_path_factory):
    from api_server import start_server, stop_server

    where = tmp_path_factory.mktemp("api")
    proc, sock = start_server(where)
    try:
        yield sock, where / "root"
    finally:
        assert stop_server(proc) == 0


API_CASES = [c for c in CASES if c.escaped_on_main or c.name.startswith("copy-dot")]


@pytest.mark.parametrize("libpod", [False, True], ids=["docker", "libpod"])
@pytest.mark.parametrize("case", API_CASES, ids=_case_id)
def test_api_uploaded_context(env, api, case, libpod):
    sock, root = api
    api_env = Env(env.top, env.victim, root)
    prefix = "/v1.41/libpod" if libpod else "/v1.41"

    def build(ctx: Path, ref: str) -> subprocess.CompletedProcess:
        name = "Containerfile"
        status, body = _request(
            sock, "POST", f"{prefix}/build?t={ref}&dockerfile={name}", _context_tar(ctx),
            "application/x-tar",
        )  # fmt: skip
        text = body.decode(errors="replace")
        lines = [json.loads(x) for x in text.splitlines() if x.strip()] if status == 200 else []
        failed = status != 200 or any("error" in x for x in lines)
        message = text if status != 200 else next((x["error"] for x in lines if "error" in x), "")
        stderr = f"Error: {json.loads(text)['message']}" if status != 200 else message
        if status == 200 and failed:
            stderr = f"Error: {message}"
        return subprocess.CompletedProcess([], 1 if failed else 0, body, stderr.encode())

    case = Case(case.name + ("/libpod" if libpod else "/docker"), case.dockerfile, case.files,
                case.ignore, case.refused, case.check)  # fmt: skip
    run_case(api_env, case, build)


def _api_tar(files: dict[str, object], victim: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for rel, what in files.items():
            info = tarfile.TarInfo(rel)
            if isinstance(what, bytes):
                info.size = len(what)
                tf.addfile(info, io.BytesIO(what))
            elif what[0] == DIR:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.type = tarfile.SYMTYPE
                info.linkname = str(what[1]).replace("{victim}", str(victim))
                tf.addfile(info)
    return buf.getvalue()


GOOD_DOCKERFILE = b"FROM scratch\nCOPY a /a\n"
DOCKERFILE_CASES = [
    ("dotdot", "../victim/Dockerfile", {}),
    ("dotdot-deep", "sub/../../../victim/Dockerfile", {"sub": (DIR,)}),
    ("absolute-host-path", "/etc/passwd", {}),
    ("absolute-victim-path", "{victim}/Dockerfile", {}),
    ("symlink-abs-out", "Dockerfile", {"Dockerfile": link("{victim}/Dockerfile")}),
    ("symlink-rel-out", "Dockerfile", {"Dockerfile": link("../victim/Dockerfile")}),
    ("symlink-to-root", "r/etc/passwd", {"r": link("/")}),
    ("dir-symlink-out", "d/Dockerfile", {"d": link("{victim}")}),
    ("chain-out", "Dockerfile", {"Dockerfile": link("l2"), "l2": link("../../victim/Dockerfile")}),
    ("missing", "nope/Dockerfile", {}),
]


@pytest.mark.parametrize("libpod", [False, True], ids=["docker", "libpod"])
@pytest.mark.parametrize(("name", "param", "files"), DOCKERFILE_CASES,
                         ids=[c[0] for c in DOCKERFILE_CASES])  # fmt: skip
def test_api_dockerfile_parameter_stays_in_the_context(env, api, name, param, files, libpod):
    sock, _root = api
    param = param.replace("{victim}", str(env.victim))
    tar = _api_tar({"a": b"a\n", **files}, env.victim)
    prefix = "/v1.41/libpod" if libpod else "/v1.41"
    value = json.dumps([param]) if libpod and name.startswith("dir") else param
    from urllib.parse import quote

    before = tree_state(env.victim)
    status, body = _request(sock, "POST", f"{prefix}/build?dockerfile={quote(value)}", tar,
                            "application/x-tar")  # fmt: skip
    assert status == 400, (status, body)
    message = json.loads(body)["message"]
    assert "Dockerfile" in message or "dockerfile" in message.lower(), message
    assert CANARY not in body and b"root:x:0:0" not in body, body
    assert tree_state(env.victim) == before
    # the server still answers
    assert _request(sock, "GET", "/_ping")[0] == 200


@pytest.mark.parametrize("libpod", [False, True], ids=["docker", "libpod"])
def test_api_default_dockerfile_symlink_out_is_refused(env, api, libpod):
    sock, _root = api
    tar = _api_tar({"a": b"a\n", "Dockerfile": link("{victim}/Dockerfile"),
                    "Containerfile": link("../victim/Dockerfile")}, env.victim)  # fmt: skip
    prefix = "/v1.41/libpod" if libpod else "/v1.41"
    status, body = _request(sock, "POST", f"{prefix}/build", tar, "application/x-tar")
    assert status == 400, (status, body)
    assert CANARY not in body


@pytest.mark.parametrize("libpod", [False, True], ids=["docker", "libpod"])
def test_api_dockerfile_inside_the_context_still_works(env, api, libpod):
    sock, root = api
    tar = _api_tar({"a": b"a\n", "sub": (DIR,), "sub/Build.file": GOOD_DOCKERFILE,
                    "Dockerfile": link("sub/Build.file")}, env.victim)  # fmt: skip
    prefix = "/v1.41/libpod" if libpod else "/v1.41"
    # an absolute name is taken from the context's root (podman --remote sends a
    # Containerfile from outside the context that way, inside the tar)
    for param in ("sub/Build.file", "./sub/../sub/Build.file", "Dockerfile", "/sub/Build.file"):
        status, body = _request(sock, "POST", f"{prefix}/build?t=inside&dockerfile={param}",
                                tar, "application/x-tar")  # fmt: skip
        assert status == 200, (param, body)
        assert b'"error"' not in body, (param, body)


def test_podman_remote_containerfile_outside_the_context(env, api, tmp_path):
    """podman --remote sends a Containerfile from outside the context inside the tar, under
    its absolute name: the API finds it there (never on the server's file system)."""
    import shutil

    if shutil.which("podman") is None:
        pytest.skip("podman not installed")
    sock, _root = api
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a").write_bytes(b"a\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "Containerfile").write_text("FROM scratch\nCOPY a /a\n")
    proc = subprocess.run(
        ["podman", "--remote", "--url", f"unix://{sock}", "build", "-q",
         "-f", str(other / "Containerfile"), "-t", "remote-f", str(ctx)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# -- a source swapped for a symlink while it is copied ---------------------------------------


def test_swap_race_never_copies_the_victim(env, tmp_path):
    """A thread keeps swapping a context file for a symlink to a victim file (and a
    directory for a symlink to the victim directory) while the context is digested, staged
    and copied; nothing read may ever come from the victim."""
    from kiln.build.context import BuildContext
    from kiln.container.copy_add import copy_into
    from kiln.errors import KilnError

    ctx = tmp_path / "ctx"
    (ctx / "d" / "sub").mkdir(parents=True)
    body = b"x" * (256 << 10)
    for i in range(20):
        (ctx / "d" / f"f{i}").write_bytes(body)
    (ctx / "d" / "sub" / "g").write_bytes(b"g\n")
    stop = threading.Event()

    def swapper() -> None:
        f, f_saved = ctx / "d" / "f7", ctx / "d" / ".f7"
        s, s_saved = ctx / "d" / "sub", ctx / "d" / ".sub"
        while not stop.is_set():
            with contextlib.suppress(OSError):
                os.rename(f, f_saved)
                os.symlink(str(env.victim / "secret"), f)
                os.rename(s, s_saved)
                os.symlink(str(env.victim / "sub"), s)
                os.unlink(f)
                os.rename(f_saved, f)
                os.unlink(s)
                os.rename(s_saved, s)

    victim_before = tree_state(env.victim)
    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    outcomes = {"ok": 0, "refused": 0}
    try:
        for i in range(40):
            rootfs = tmp_path / f"rootfs{i}"
            rootfs.mkdir()
            with BuildContext(str(ctx), ["*.md"]) as context:
                try:
                    context.digest(["d"])
                    with context.staged(["d", "d/sub/g"]) as staged:
                        copy_into(str(rootfs), ["d", "d/sub/g"], "/out/", context_dir=staged)
                    with contextlib.suppress(KilnError):  # the unstaged path too
                        copy_into(str(rootfs), ["d"], "/direct/", context_dir=str(ctx))
                    outcomes["ok"] += 1
                except KilnError:
                    outcomes["refused"] += 1
            for p in rootfs.rglob("*"):
                if p.is_file() and not p.is_symlink():
                    assert CANARY not in p.read_bytes(), p
            assert not cached_digests_of(context) & victim_digests(env.victim)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert tree_state(env.victim) == victim_before
    assert outcomes["ok"] + outcomes["refused"] == 40, outcomes


def cached_digests_of(context) -> set[str]:
    return {digest for _key, digest in context._memo.values()}
