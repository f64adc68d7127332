"""The installed ``kiln`` console script, run as a subprocess, on the image verbs.

Includes: save -> ``podman load`` keeps the image ID (and back); a ``kiln load``
SIGKILLed part way through a ~150 MB archive leaves no visible image and the
next load succeeds.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

pytest_plugins = ["fixtures_images"]

KILN = shutil.which("kiln")
pytestmark = pytest.mark.skipif(KILN is None, reason="the kiln console script is not installed")


def kiln(root, *args, check=True, input=None, timeout=300):
    env = dict(os.environ, KILN_ROOT=str(root))
    res = subprocess.run([KILN, *args], env=env, input=input, capture_output=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"kiln {' '.join(args)} -> {res.returncode}: {res.stderr.decode()}")
    return res


def out_lines(res) -> list[str]:
    return res.stdout.decode().splitlines()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "kiln-root"


@pytest.fixture
def imported(root, busybox_rootfs_tar):
    res = kiln(root, "import", "-c", 'CMD ["/bin/sh"]', busybox_rootfs_tar, "bb:1")
    return res.stdout.decode().strip()


# podman 4.3's load of an archive whose RepoTags holds one of these: exit 125 and
# "docker-archive: Invalid tag base (docker.io/library/base): does not contain a tag" /
# 'Invalid tag "Base:1" in manifest item @0: ... repository name must be lowercase'
PODMAN_REFUSES = {"base": "a name without a tag", "Base:1": "must be lowercase"}


@pytest.mark.parametrize("name", sorted(PODMAN_REFUSES))
def test_load_refuses_a_repo_tag_podman_refuses(root, tmp_path, name):
    """kiln loaded such an image unnamed; now, as podman, it says why and loads nothing,
    from a file and from standard input alike."""
    from parity_archives import archive_named

    archive = tmp_path / "odd.tar"
    archive.write_bytes(archive_named(name))
    for args, data in ((("-i", str(archive)), None), ((), archive.read_bytes())):
        res = kiln(root, "load", *args, input=data, check=False)
        err = res.stderr.decode()
        assert res.returncode == 125 and res.stdout == b"", err
        assert f'invalid tag "{name}" in RepoTags' in err and PODMAN_REFUSES[name] in err, err
        assert "Traceback" not in err and "/proc/" not in err, err
    assert out_lines(kiln(root, "images", "-a", "-q")) == []


def test_import_images_inspect_history_tag_rmi(root, imported):
    assert imported.startswith("sha256:")
    table = out_lines(kiln(root, "images"))
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repo, tag, short_id, *rest = table[1].split()
    assert (repo, tag, short_id) == ("localhost/bb", "1", imported[7:19])
    assert rest[-1] == "MB" and rest[-3] == "ago"

    [obj] = json.loads(kiln(root, "inspect", "bb:1").stdout)
    assert obj["Id"] == imported[7:]
    assert obj["Config"]["Cmd"] == ["/bin/sh"]
    assert obj["RepoTags"] == ["localhost/bb:1"]

    hist = out_lines(kiln(root, "history", "bb:1"))
    assert hist[0].split()[:3] == ["ID", "CREATED", "CREATED"]
    assert hist[1].startswith(imported[7:19])

    kiln(root, "tag", "bb:1", "bb:2", "quay.io/x/bb:3")
    names = sorted(json.loads(kiln(root, "images", "--format", "json").stdout)[0]["Names"])
    assert names == ["localhost/bb:1", "localhost/bb:2", "quay.io/x/bb:3"]
    assert out_lines(kiln(root, "rmi", "bb:2")) == ["Untagged: localhost/bb:2"]
    res = kiln(root, "rmi", imported[7:19], check=False)
    assert res.returncode == 125 and b"please force removal" in res.stderr
    res = kiln(root, "rmi", "-f", imported[7:19])
    assert out_lines(res)[-1] == f"Deleted: {imported[7:]}"
    assert out_lines(kiln(root, "images", "-q")) == []
    assert kiln(root, "image", "exists", "bb:1", check=False).returncode == 1


def test_save_load_and_stdout_stdin(root, tmp_path, imported):
    archive = tmp_path / "bb.tar"
    kiln(root, "save", "-o", str(archive), "bb:1")
    streamed = kiln(root, "save", "bb:1").stdout  # stdout is a pipe here
    assert streamed == archive.read_bytes()  # docker-archives are written deterministically
    other = tmp_path / "other"
    assert out_lines(kiln(other, "load", "-i", str(archive))) == ["Loaded image: localhost/bb:1"]
    third = tmp_path / "third"
    assert out_lines(kiln(third, "load", input=streamed)) == ["Loaded image: localhost/bb:1"]
    ids = out_lines(kiln(third, "images", "-q", "--no-trunc"))
    assert ids == [imported]
    oci = tmp_path / "bb-oci.tar"
    kiln(root, "save", "--format", "oci-archive", "-o", str(oci), "bb:1")
    assert out_lines(kiln(tmp_path / "fourth", "load", "-q", "-i", str(oci))) == [
        "Loaded image: localhost/bb:1"
    ]


@pytest.fixture
def podman(tmp_path):
    """podman with its own throwaway storage (the runroot path must stay short)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    import tempfile

    runroot = tempfile.mkdtemp(prefix="kpr-", dir="/tmp")
    yield [
        "podman",
        "--root",
        str(tmp_path / "podman-root"),
        "--runroot",
        runroot,
        "--storage-driver",
        "vfs",
    ]
    shutil.rmtree(runroot, ignore_errors=True)


@pytest.mark.root
def test_kiln_save_then_podman_load_keeps_the_image_id(root, tmp_path, imported, podman):
    archive = tmp_path / "bb.tar"
    kiln(root, "save", "-o", str(archive), "bb:1")
    subprocess.run([*podman, "load", "-q", "-i", str(archive)], check=True, capture_output=True)
    ids = subprocess.run(
        [*podman, "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ids == [imported, "localhost/bb:1"]
    # and back: podman save -> kiln load
    back = tmp_path / "back.tar"
    subprocess.run(
        [*podman, "save", "-q", "-o", str(back), "localhost/bb:1"], check=True, capture_output=True
    )
    other = tmp_path / "other"
    assert out_lines(kiln(other, "load", "-i", str(back))) == ["Loaded image: localhost/bb:1"]
    assert out_lines(kiln(other, "images", "-q", "--no-trunc")) == [imported]


# --- crash safety -----------------------------------------------------------------

# big enough that the load is killed well before its end (at a quarter: over 100 MB left to
# go), and no bigger: every byte is written, hashed, copied, loaded twice and compressed
BIG = 150 * 1000 * 1000


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory):
    """A docker-archive with one BIG-byte layer of random data."""
    d = tmp_path_factory.mktemp("big")
    layer = d / "layer.tar"
    with open(layer, "wb") as f, tarfile.open(fileobj=f, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = BIG
        tar.addfile(info, _RandomReader(BIG))
    import hashlib

    h = hashlib.sha256()
    with open(layer, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "random data"}],
        }
    ).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": cfg_name, "RepoTags": ["localhost/big:1"], "Layers": ["layer.tar"]}]
    ).encode()
    archive = d / "big.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in ((cfg_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(str(layer), arcname="layer.tar")
    layer.unlink()
    return archive, "sha256:" + cfg_name[: -len(".json")]


class _RandomReader(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return os.urandom(n)


def _dir_bytes(path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


@pytest.mark.slow
def test_sigkilled_load_leaves_no_partial_image_and_the_next_load_works(root, big_archive):
    archive, image_id = big_archive
    kiln(root, "images")  # create the store
    env = dict(os.environ, KILN_ROOT=str(root))
    proc = subprocess.Popen(
        [KILN, "load", "-q", "-i", str(archive)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        # kill once a good part of the layer has been ingested, before it is complete
        while _dir_bytes(root) < BIG // 4:
            assert proc.poll() is None, "the load finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert out_lines(kiln(root, "images", "-a", "-q")) == []
    assert kiln(root, "image", "exists", "localhost/big:1", check=False).returncode == 1

    res = kiln(root, "load", "-i", str(archive))
    assert out_lines(res) == ["Loaded image: localhost/big:1"]
    assert out_lines(kiln(root, "images", "-q", "--no-trunc")) == [image_id]
    [obj] = json.loads(kiln(root, "inspect", "localhost/big:1").stdout)
    assert obj["Size"] >= BIG
