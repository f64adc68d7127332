"""Hostile and broken image archives and rootfs tarballs, end to end through the ``kiln`` CLI.

Each case builds an input (tests/hostile_images.py) next to a sentinel directory,
feeds it to ``kiln load -i`` or ``kiln import`` against a store that holds a busybox
image, and checks: the outcome (refused with one clear ``Error:`` line naming the
problem, or loaded and contained), no traceback, the store unchanged when refused
(image list, blob files, snapshots), and nothing written outside the target (the
sentinel directory and the store's parent directory stay byte-identical, and no
file named like an escape target appears anywhere in the test directory).

Images that load fine but carry escapes are then unpacked by ``kiln from`` and run
(``kiln run <c> true``): the unpack either refuses them cleanly or keeps every
write inside the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_images"]

import hostile_images as hi  # noqa: E402
from archive_corpus import REG, tar_of  # noqa: E402

KILN = shutil.which("kiln")
pytestmark = pytest.mark.skipif(KILN is None, reason="the kiln console script is not installed")
RATIO = "50"  # KILN_MAX_DECOMPRESSION_RATIO for every run: the bombs here are ~1000:1


@dataclass
class Paths:
    top: Path  # the test directory; nothing named like an escape may appear in it
    root: Path  # KILN_ROOT
    work: Path  # where the archive is written
    sentinel: Path  # next to the archive

    @property
    def archive(self) -> Path:
        return self.work / "input.tar"


def tree_state(path: Path, skip: Path | None = None) -> dict[str, str]:
    """Relative path -> kind and content hash (or link target) of everything under ``path``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            if skip is not None and p == skip:
                continue
            rel = str(p.relative_to(path))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = f"{oct(st.st_mode)}:" + hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = f"{oct(st.st_mode)}:dir"
    return out


def escapes_found(top: Path, root: Path) -> list[str]:
    """Files named like an escape target anywhere under ``top`` but outside the snapshots."""
    snaps = root / "snapshots"
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != "snapshots"]
        found += [os.path.join(dirpath, n) for n in dirnames + filenames if hi.ESCAPE in n]
    return [f for f in found if not f.startswith(str(snaps))]


class Kiln:
    def __init__(self, paths: Paths):
        self.paths = paths
        self.env = dict(
            os.environ,
            KILN_ROOT=str(paths.root),
            TMPDIR=str(paths.top / "tmp"),
            KILN_MAX_DECOMPRESSION_RATIO=RATIO,
        )
        self.env.pop("KILN_DEBUG", None)

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KILN, "--progress", "quiet", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str) -> str:
        res = self(*args)
        assert res.returncode == 0, f"kiln {' '.join(args)}: {res.stderr}"
        return res.stdout

    def store_state(self) -> dict:
        root = self.paths.root
        snaps = root / "snapshots"
        return {
            "images": json.loads(self.ok("images", "-a", "--no-trunc", "--format", "json")),
            "blobs": sorted(os.listdir(root / "blobs" / "sha256")),
            "layers": sorted(os.listdir(snaps / "layers")) if (snaps / "layers").exists() else [],
            "active": sorted(os.listdir(snaps / "active")) if (snaps / "active").exists() else [],
            # import and load unpack as they read: a refused input leaves no staged tree
            "snapshot tmp": sorted(os.listdir(snaps / "tmp")) if (snaps / "tmp").exists() else [],
        }

    def outside_state(self) -> dict:
        return {
            "sentinel": tree_state(self.paths.sentinel),
            "store parent": tree_state(self.paths.root.parent, skip=self.paths.root),
        }


def check_error(res: subprocess.CompletedProcess, words: tuple[str, ...], what: str) -> None:
    lines = res.stderr.splitlines()
    assert res.returncode != 0, f"{what}: accepted, expected an error about {words}"
    assert "Traceback" not in res.stderr, f"{what}: traceback\n{res.stderr}"
    assert len(lines) == 1 and lines[0].startswith("Error: "), f"{what}: stderr {res.stderr!r}"
    assert not re.search(r"unexpected [A-Z]\w+:", lines[0]), f"{what}: a bug: {lines[0]}"
    msg = lines[0].lower()
    assert any(w.lower() in msg for w in words), f"{what}: {lines[0]!r} names none of {words}"


@pytest.fixture(scope="module")
def base_root(tmp_path_factory, busybox_rootfs_tar) -> Path:
    top = tmp_path_factory.mktemp("hostile-base")
    paths = Paths(top, top / "store" / "root", top, top)
    (top / "tmp").mkdir()
    kiln = Kiln(paths)
    kiln.ok("import", "-c", 'CMD ["/bin/sh"]', busybox_rootfs_tar, "busybox:latest")
    if os.geteuid() == 0:  # busybox unpacked already: a refused layer above it adds nothing
        kiln.ok("from", "--pull", "never", "--name", "warm", "busybox")
        kiln.ok("rm", "warm")
    return paths.root


@pytest.fixture(scope="module")
def base_state(base_root) -> dict:
    """What every test's store holds before its input (each starts as a copy of base_root)."""
    return Kiln(Paths(base_root.parent, base_root, base_root, base_root)).store_state()


@pytest.fixture
def kiln(tmp_path, base_root) -> Kiln:
    paths = Paths(
        tmp_path, tmp_path / "store" / "root", tmp_path / "work", tmp_path / "work" / "sentinel"
    )
    paths.sentinel.mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    (paths.sentinel / "secret.txt").write_bytes(b"do not read or overwrite\n")
    (paths.root.parent).mkdir()
    (paths.root.parent / "neighbour.txt").write_bytes(b"next to the store\n")
    shutil.copytree(base_root, paths.root, symlinks=True)
    return Kiln(paths)


# --- the corpus ---------------------------------------------------------------------

Build = Callable[[Paths], bytes]


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    error: tuple[str, ...] | None  # words one of which the Error: line must hold; None = loads
    verb: str = "load"  # "load" | "import"
    inside: tuple[str, ...] = ()  # paths that must exist in the container after unpacking
    run: bool = False  # also ``kiln run <c> true``
    marks: tuple = field(default_factory=tuple)


def _img(layer: bytes, docker: bool = False, **kw) -> hi.Image:
    return hi.image([layer], docker=docker, **kw)


def _docker(layer: bytes, **kw) -> Build:
    return lambda p: hi.docker_archive(_img(layer, docker=True), **kw)


def _oci(layer: bytes, **kw) -> Build:
    return lambda p: hi.oci_archive(_img(layer), **kw)


def _layer_escape_to(p: Paths) -> bytes:
    return tar_of((f"{p.sentinel}/{hi.ESCAPE}", REG, b"x"))


def _docker_abs_member(p: Paths) -> bytes:
    img = _img(hi.plain_layer(), docker=True)
    return hi.docker_archive(img, hook=hi.rename_layers(f"{p.top}/{hi.ESCAPE}-abs/")(img))


def _docker_dotdot_member(p: Paths) -> bytes:
    img = _img(hi.plain_layer(), docker=True)
    return hi.docker_archive(img, hook=hi.rename_layers(f"../{hi.ESCAPE}/")(img))


def _docker_manifest_symlink(p: Paths) -> bytes:
    # a valid-looking manifest.json waits outside; the archive's is a link to it
    img = _img(hi.plain_layer(), docker=True)
    name = img.config_digest[7:] + ".json"
    entry = [{"Config": name, "RepoTags": ["stolen:1"], "Layers": []}]
    (p.sentinel / "manifest.json").write_text(json.dumps(entry))
    target = "../" + os.path.relpath(p.sentinel / "manifest.json", p.work)  # leaves the tar
    return hi.docker_archive(img, hook=hi.replace("manifest.json", (None, hi.SYM, target)))


def _docker_config_symlink(p: Paths) -> bytes:
    img = _img(hi.plain_layer(), docker=True)
    return hi.docker_archive(img, hook=hi.replace(".json", (None, hi.SYM, "/etc/passwd")))


def _oci_blob_symlink_outside(p: Paths) -> bytes:
    # the layer blob is a link to a host file whose digest it names: a read of the host
    secret = p.sentinel / "secret.tar"
    layer = hi.plain_layer()
    secret.write_bytes(layer)
    img = _img(layer)
    return hi.oci_archive(
        img, hook=hi.replace(hi.sha(layer)[7:], (None, hi.SYM, str(secret.resolve())))
    )


def _oci_blob_hardlink_index(p: Paths) -> bytes:
    img = _img(hi.plain_layer())
    return hi.oci_archive(
        img, hook=hi.replace(hi.sha(img.layers[0])[7:], (None, hi.LNK, "index.json"))
    )


def _docker_truncated_layer(p: Paths) -> bytes:
    layer = hi.plain_layer("big", bytes(range(256)) * 64)
    img = _img(layer, docker=True)
    name = f"{hi.sha(layer)[7:]}/layer.tar"
    return hi.docker_archive(img, hook=hi.replace(name, (None, REG, layer[:3000])))


def _docker_diff_id_mismatch(p: Paths) -> bytes:
    return hi.docker_archive(hi.image([hi.plain_layer()], [hi.sha(b"other")], docker=True))


def _oci_layer_digest_mismatch(p: Paths) -> bytes:
    img = _img(hi.plain_layer())
    tampered = hi.plain_layer("hello.txt", b"HELLO\n")  # same size, other bytes
    return hi.oci_archive(img, hook=hi.replace(hi.sha(img.layers[0])[7:], (None, REG, tampered)))


def _oci_diff_id_mismatch(p: Paths) -> bytes:
    return hi.oci_archive(hi.image([hi.plain_layer()], [hi.sha(b"other")]))


def _oci_config_digest_mismatch(p: Paths) -> bytes:
    img = _img(hi.plain_layer())
    evil = img.config.replace(b'"/bin/sh"', b'"/bin/xx"')
    return hi.oci_archive(img, hook=hi.replace(img.config_digest[7:], (None, REG, evil)))


def _oci_missing_blob(p: Paths) -> bytes:
    img = _img(hi.plain_layer())
    return hi.oci_archive(img, hook=hi.replace(hi.sha(img.layers[0])[7:], None))


def _oci_manifest_raw(raw: bytes) -> Build:
    return lambda p: hi.oci_archive(_img(hi.plain_layer()), manifest=raw)


def _docker_manifest_raw(raw: bytes) -> Build:
    return lambda p: hi.docker_archive(_img(hi.plain_layer(), docker=True), manifest=raw)


def _oci_index_raw(raw: bytes) -> Build:
    return lambda p: hi.oci_archive(_img(hi.plain_layer()), index=raw)


def _oci_nested_index(p: Paths) -> bytes:
    img = _img(hi.plain_layer())
    top, blobs = hi.nested_index(hi.oci_manifest(img), 6)
    return hi.oci_archive(img, index=top, extra_blobs=blobs)


def _oci_index_points_at_itself(p: Paths) -> bytes:
    # index.json names a nested index whose blob is a hard link back to index.json
    img = _img(hi.plain_layer())
    fake = hi.sha(b"index.json itself")
    desc = {"mediaType": hi.OCI_INDEX, "digest": fake, "size": 400}
    top = json.dumps({"schemaVersion": 2, "mediaType": hi.OCI_INDEX, "manifests": [desc]})
    link = hi.hardlink_member(f"blobs/sha256/{fake[7:]}", "index.json")
    return hi.oci_archive(img, index=top.encode(), hook=lambda members: [*members, link])


def _huge_json(p: Paths) -> bytes:
    big = b'[{"Config": "x", "Layers": [], "RepoTags": ["' + b"a" * (50 << 20) + b'"]}]'
    return hi.docker_archive(_img(hi.plain_layer(), docker=True), manifest=big)


def _import_raw(data: bytes) -> Build:
    return lambda p: data


def _truncated_archive(p: Paths) -> bytes:
    layer = hi.plain_layer("big", bytes(range(256)) * 256)
    data = hi.docker_archive(_img(layer, docker=True))
    return data[: len(data) // 2]


def _two_layer_busybox(layer: bytes) -> Build:
    """busybox rootfs + ``layer``: an image that loads and can run."""

    def build(p: Paths) -> bytes:
        return hi.oci_archive(hi.image([ROOTFS[0], layer]))

    return build


ROOTFS: list[bytes] = []  # the busybox rootfs tar, filled by the module fixture

DOTDOT = hi.corpus_layer("dotdot traversal")
SYMLINK_WRITE = hi.corpus_layer("symlink escape then write")
CHAIN = hi.corpus_layer("relative symlink chain escape")
HARDLINK = hi.corpus_layer("hardlink to /etc/passwd")
HUGE_PAX = hi.corpus_layer("huge pax header")
GNU_LONG = hi.corpus_layer("gnu longname escape")
BOMB = hi.gzip_bomb()

# words are looked for in the whole line, which names the input (.../input.tar): no bare "tar"
LOAD_CASES = [
    Case("docker: ../ member paths", _docker_dotdot_member, ("outside", "..", "member")),
    Case("docker: absolute member paths", _docker_abs_member, ("absolute", "member", "outside")),
    Case("docker: manifest.json symlink outside", _docker_manifest_symlink, ("outside",)),
    Case("docker: config symlink to /etc/passwd", _docker_config_symlink, ("link", "config")),
    Case("oci: layer blob symlink to host file", _oci_blob_symlink_outside, ("link", "blob")),
    Case("oci: layer blob hardlink to index.json", _oci_blob_hardlink_index, ("link", "digest")),
    Case(
        "docker: truncated layer",
        _docker_truncated_layer,
        ("truncated", "does not match its digest"),
    ),
    Case("docker: diff_id mismatch", _docker_diff_id_mismatch, ("diff_id", "digest")),
    Case("oci: layer digest mismatch", _oci_layer_digest_mismatch, ("digest", "match")),
    Case("oci: diff_id mismatch", _oci_diff_id_mismatch, ("config says", "diff_id")),
    Case("oci: config digest mismatch", _oci_config_digest_mismatch, ("digest", "match")),
    Case("oci: manifest names a missing blob", _oci_missing_blob, ("not in", "missing")),
    Case("oci: manifest not JSON", _oci_manifest_raw(b"{not json"), ("json",)),
    Case(
        "oci: manifest duplicate keys",
        _oci_manifest_raw(b'{"schemaVersion": 2, "schemaVersion": 2}'),
        ("duplicate",),
    ),
    Case(
        "oci: manifest with NaN",
        _oci_manifest_raw(b'{"schemaVersion": NaN, "layers": []}'),
        ("nan", "json"),
    ),
    Case("docker: manifest.json not JSON", _docker_manifest_raw(b"\xff\xfe[{"), ("json",)),
    Case(
        "docker: manifest.json duplicate keys",
        _docker_manifest_raw(b'[{"Config": "a", "Config": "b", "Layers": []}]'),
        ("duplicate",),
    ),
    Case("docker: manifest.json of 50 MB", _huge_json, ("too large", "large", "limit")),
    Case("oci: index.json not JSON", _oci_index_raw(b"[1, 2"), ("json",)),
    Case("oci: index nested 6 deep", _oci_nested_index, ("nest", "deep")),
    Case("oci: index.json pointing at itself", _oci_index_points_at_itself, ("digest", "size")),
    Case("oci: gzip bomb layer", _oci(BOMB), ("decompresses beyond", "ratio")),
    Case("docker: gzip bomb layer", _docker(BOMB), ("decompresses beyond", "ratio")),
    Case("docker: truncated archive", _truncated_archive, ("is truncated",)),
    Case(
        "not a tar at all", _import_raw(b"hello, not an archive\n" * 100), ("not a readable tar",)
    ),
    # layers that unpacking would refuse are refused when they arrive
    Case(
        "oci: layer with ../ traversal",
        _two_layer_busybox(DOTDOT),
        ("not a valid layer", "outside the layer root"),
    ),
    Case(
        "oci: layer with GNU longname ../",
        _two_layer_busybox(GNU_LONG),
        ("not a valid layer", "outside the layer root"),
    ),
    # layers whose tar escapes in ways unpacking contains: they load, and stay contained
    Case(
        "oci: layer with absolute path into the sentinel",
        lambda p: _two_layer_busybox(_layer_escape_to(p))(p),
        None,
        run=True,
    ),
    Case(
        "oci: layer symlink escape then write through it",
        _two_layer_busybox(SYMLINK_WRITE),
        None,
        inside=("outside-sentinel/pwned",),
        run=True,
    ),
    Case(
        "oci: layer relative symlink chain then write",
        _two_layer_busybox(CHAIN),
        None,
        inside=("pwned",),
        run=True,
    ),
    Case(
        "oci: layer with a 2 MB PAX header",
        _two_layer_busybox(HUGE_PAX),
        ("not a valid layer", "extended header"),
    ),
    Case(
        "oci: layer hardlink to /etc/passwd",
        _two_layer_busybox(HARDLINK),
        ("not a valid layer", "hard link"),
    ),
    Case(
        "oci: layer with device nodes and setuid files",
        _two_layer_busybox(hi.device_setuid_layer()),
        None,
        inside=("evil-mem", "suid-sh", "sticky"),
        run=True,
    ),
]

IMPORT_CASES = [
    Case("import: ../ traversal", _import_raw(DOTDOT), ("outside",), verb="import"),
    Case(
        "import: symlink then write through it",
        _import_raw(SYMLINK_WRITE),
        None,
        verb="import",
        inside=("outside-sentinel/pwned",),
    ),
    Case("import: hardlink to outside", _import_raw(HARDLINK), ("hard link", "not in"), "import"),
    Case("import: gzip bomb", _import_raw(BOMB), ("decompresses beyond",), verb="import"),
    Case(
        "import: truncated",
        _import_raw(tar_of(("a", REG, b"x" * 5000))[:2000]),
        ("truncated",),
        verb="import",
    ),
    Case("import: not a tar", _import_raw(b"plain text\n" * 200), ("not a tar",), verb="import"),
    Case(
        "import: absolute path into the sentinel",
        _layer_escape_to,
        None,
        verb="import",
    ),
]


@pytest.fixture(scope="module", autouse=True)
def _rootfs(busybox_rootfs_tar):
    ROOTFS[:] = [Path(busybox_rootfs_tar).read_bytes()]


def _feed(kiln: Kiln, case: Case) -> subprocess.CompletedProcess:
    p = kiln.paths
    if case.verb == "import":
        return kiln("import", str(p.archive), "hostile:1")
    return kiln("load", "-q", "-i", str(p.archive))


@pytest.mark.parametrize("case", LOAD_CASES + IMPORT_CASES, ids=lambda c: c.name)
def test_hostile_input(kiln: Kiln, case: Case, base_state):
    p = kiln.paths
    store_before = base_state
    p.archive.write_bytes(case.build(p))
    outside_before = kiln.outside_state()
    res = _feed(kiln, case)
    if case.error is not None:
        check_error(res, case.error, case.name)
        assert kiln.store_state() == store_before, f"{case.name}: the store changed"
    else:
        assert res.returncode == 0, f"{case.name}: refused: {res.stderr}"
        assert "Traceback" not in res.stderr
        _unpack_and_run(kiln, case)
    assert kiln.outside_state() == outside_before, f"{case.name}: wrote outside its target"
    assert escapes_found(p.top, p.root) == [], f"{case.name}: an escape landed outside"


def _unpack_and_run(kiln: Kiln, case: Case) -> None:
    if os.geteuid() != 0:
        return  # from/run need root here
    res = kiln("from", "--pull", "never", "--name", "hostile", "hostile:1")
    assert res.returncode == 0, f"{case.name}: kiln from: {res.stderr}"
    layers = kiln.paths.root / "snapshots" / "layers"
    for rel in case.inside:  # the escape landed in the top layer's own directory
        top = layers / max(os.listdir(layers), key=int) / "fs"
        assert os.path.lexists(top / rel), f"{case.name}: {rel} not inside the layer"
    if case.run:
        res = kiln("run", "hostile", "true")
        assert res.returncode == 0, f"{case.name}: kiln run: {res.stderr}"
