"""kiln.container.Builder through the Python API on a busybox base, runc and chroot isolation."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("fixtures_images")
from container_cli_fixture import ISOLATIONS  # noqa: E402
from fixtures_images import save_docker_archive  # noqa: E402
from kiln.container import Builder  # noqa: E402
from kiln.errors import InvalidArgument, NotFound, ProcessFailed  # noqa: E402
from kiln.runtime import RunOptions  # noqa: E402

pytest_plugins = ["fixtures_images"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, overlayfs and a runtime"),
]


@pytest.fixture
def snaps(kiln_store, tmp_path, monkeypatch):
    from kiln.snapshot import Snapshotter

    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "runtime"))
    s = Snapshotter(os.path.join(kiln_store.root, "snapshots"))
    yield s
    for rec in kiln_store.list_containers():
        try:
            Builder.load(kiln_store, rec.id, snapshots=s).delete()
        except Exception:
            pass
    s.close()


def new(store, snaps, image="busybox", **kw) -> Builder:
    return Builder.from_image(store, image, snapshots=snaps, **kw)


def sh(b: Builder, script: str, isolation: str = "oci", **fields) -> tuple[int, str]:
    with tempfile.TemporaryFile() as out:
        opts = RunOptions(
            args=[], isolation=isolation, stdin=subprocess.DEVNULL, stdout=out, stderr=out, **fields
        )
        code = b.run(["sh", "-c", script], opts)
        out.seek(0)
        return code, out.read().decode()


def layer_names(store, record) -> list[str]:
    from kiln.image import open_store_image

    img = open_store_image(store, record.id)
    with img.open_layer(img.layers[-1]) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        return [m.name for m in tar]


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_run_changes_survive_commit(kiln_store, snaps, busybox_image, isolation):
    b = new(kiln_store, snaps)
    assert b.name == "busybox-working-container"
    code, out = sh(
        b,
        "echo hello; mkdir -p /data && echo x > /data/f && chmod 640 /data/f && "
        "chown 65534:65534 /data/f && rm /etc/group && rm -r /usr/sbin && exit 3",
        isolation,
    )
    assert (code, out) == (3, "hello\n")
    kinds = {c.path: c.kind for c in b.diff()}
    assert kinds["/data/f"] == "A" and kinds["/etc/group"] == "D" and kinds["/usr/sbin"] == "D"
    rec = b.commit("test/changed:1")
    assert rec.id.startswith("sha256:") and "localhost/test/changed:1" in rec.names
    names = layer_names(kiln_store, rec)
    assert "etc/.wh.group" in names and "usr/.wh.sbin" in names and "data/f" in names
    # nothing the run needed only for itself ends up in the layer
    for leaked in ("etc/hosts", "etc/resolv.conf", "etc/hostname", "proc", "sys", "dev"):
        assert leaked not in names

    from kiln.image import validate_image

    validate_image(kiln_store, rec.manifest_digest)
    c = new(kiln_store, snaps, "test/changed:1")
    code, out = sh(
        c,
        "stat -c '%a %u:%g' /data/f; cat /data/f; ls /etc/group /usr/sbin 2>&1 | wc -l",
        isolation,
    )
    assert code == 0
    assert out.splitlines() == ["640 65534:65534", "x", "2"]


def test_copy_config_commit_podman(kiln_store, snaps, busybox_image, tmp_path, podman):
    ctx = tmp_path / "ctx"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "dir" / "f1").write_text("one\n")
    (ctx / "top.txt").write_text("top\n")
    b = new(kiln_store, snaps)
    out = b.copy(["dir", "top.txt"], "/app/", context_dir=str(ctx), chown="nobody", chmod="750")
    assert out.digest.startswith("sha256:")
    b.config.set_env("GREETING", "hi")
    b.config.set_cmd(["sh", "-c", "cat /app/f1 /app/top.txt; id -u; echo $GREETING"])
    b.config.set_label("org.example", "yes")
    b.config.set_working_dir("/app")
    b.config.add_port("8080")
    b.save()
    rec = b.commit("test/copied:1", format="docker")
    archive = str(tmp_path / "img.tar")
    from kiln.image import open_store_image

    save_docker_archive(open_store_image(kiln_store, rec.id), archive, ["test/copied:1"])
    image_id = rec.id.removeprefix("sha256:")
    out = podman_run(podman, archive, image_id)
    assert out.splitlines() == ["one", "top", "0", "hi"]
    cfg = podman_inspect(podman, image_id)
    assert cfg["Labels"] == {"org.example": "yes"}
    assert cfg["WorkingDir"] == "/app" and "8080/tcp" in cfg["ExposedPorts"]


@pytest.fixture
def podman():
    """podman with its own throw-away storage (the runroot path must stay short)."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed")
    top = tempfile.mkdtemp(prefix="kp-", dir="/tmp")
    base = ["podman", "--root", f"{top}/root", "--runroot", f"{top}/run",
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file"]  # fmt: skip
    yield base
    subprocess.run([*base, "rmi", "-a", "-f"], capture_output=True)
    shutil.rmtree(top, ignore_errors=True)


def podman_run(base: list[str], archive: str, image: str, *args: str) -> str:
    import resource

    subprocess.run([*base, "load", "-i", archive], check=True, capture_output=True)
    limits = []  # podman's defaults may exceed this machine's hard limits
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        value = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        limits += ["--ulimit", f"{name}={value}:{value}"]
    res = subprocess.run(
        [*base, "run", "--rm", "--runtime", "runc", "--net", "none", *limits, image, *args],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def podman_inspect(base: list[str], image: str) -> dict:
    import json

    res = subprocess.run([*base, "inspect", image], check=True, capture_output=True, text=True)
    return json.loads(res.stdout)[0]["Config"]


def test_reproducible_timestamp(kiln_store, snaps, busybox_image, tmp_path):
    (tmp_path / "f").write_text("same\n")
    ids = []
    for _ in range(2):
        b = new(kiln_store, snaps)
        b.copy(["f"], "/f", context_dir=str(tmp_path))
        b.add_history("/bin/sh -c #(nop) COPY f /f", empty_layer=True)
        ids.append(b.commit(timestamp=1_700_000_000, created_by="COPY f /f").id)
        b.delete()
    assert ids[0] == ids[1]


def test_squash_omit_history_and_changes(kiln_store, snaps, busybox_image):
    from kiln.image import open_store_image

    b = new(kiln_store, snaps)
    assert sh(b, "echo a > /a")[0] == 0
    rec = b.commit(squash=True, omit_history=True, changes=['CMD ["/a"]', "ENV X=1"])
    img = open_store_image(kiln_store, rec.id)
    assert len(img.layers) == 1 and img.config.history == ()
    assert img.config.config.cmd == ("/a",) and "X=1" in img.config.config.env
    assert rec.names == []  # dangling without a name
    assert b.config.runtime.cmd == ("/bin/sh",)  # --change affects the image only


def test_scratch_copy_commit(kiln_store, snaps, busybox_image, tmp_path):
    (tmp_path / "hello").write_text("hi\n")
    b = Builder.from_image(kiln_store, None, snapshots=snaps)
    assert b.name == "working-container"
    b.copy(["hello"], "/", context_dir=str(tmp_path))
    rec = b.commit("test/scratch:1")
    assert layer_names(kiln_store, rec) == ["hello"]


def test_persisted_state_and_lookup(kiln_store, snaps, busybox_image):
    b = new(kiln_store, snaps, name="mine")
    b.config.set_user("nobody")
    b.save()
    path = b.mount()
    again = Builder.load(kiln_store, path, snapshots=snaps)  # by mount path
    assert again.id == b.id and again.config.runtime.user == "nobody"
    assert Builder.load(kiln_store, b.id[:10], snapshots=snaps).name == "mine"
    assert os.path.isfile(os.path.join(path, "bin", "busybox"))
    again.unmount()
    assert not os.path.ismount(path)
    with pytest.raises(Exception, match="already in use"):
        new(kiln_store, snaps, name="mine")
    assert new(kiln_store, snaps).name == "busybox-working-container"
    assert new(kiln_store, snaps).name == "busybox-working-container-1"


def test_foreign_state_refused(kiln_store, snaps, busybox_image):
    from kiln.store import ContainerRecord

    kiln_store.put_container(ContainerRecord("f" * 64, "alien", None, {"x": 1}, time.time()))
    with pytest.raises(InvalidArgument, match="not made by kiln"):
        Builder.load(kiln_store, "alien", snapshots=snaps)
    kiln_store.delete_container("f" * 64)


def test_bad_input_leaves_things_as_they_were(kiln_store, snaps, busybox_image, tmp_path):
    with pytest.raises(NotFound):
        Builder.load(kiln_store, "no-such-container", snapshots=snaps)
    with pytest.raises(NotFound):
        new(kiln_store, snaps, "no-such-image", pull_policy="never")
    b = new(kiln_store, snaps)
    state_before = kiln_store.get_container(b.id).state
    with pytest.raises(NotFound):
        b.copy(["missing"], "/x", context_dir=str(tmp_path))
    (tmp_path / "ok").write_text("ok")
    with pytest.raises(InvalidArgument, match="unknown user"):
        b.copy(["ok"], "/x", context_dir=str(tmp_path), chown="nosuchuser")
    with pytest.raises(NotFound):  # the context's etc/passwd (none), never the host's
        b.copy(["../etc/passwd"], "/x", context_dir=str(tmp_path))
    assert kiln_store.get_container(b.id).state == state_before
    assert b.diff() == []
    code, _ = sh(b, "exec /no/such/binary")
    assert code == 127
    opts = RunOptions(args=[], stdin=subprocess.DEVNULL)
    with pytest.raises(ProcessFailed, match='"no-such-binary": executable file not found') as info:
        b.run(["no-such-binary"], opts)
    assert info.value.exit_code == 127
    assert b.diff() == []


KILLER = textwrap.dedent(
    """
    import sys
    from kiln.container import Builder
    from kiln.snapshot import Snapshotter
    from kiln.store import Store
    store = Store.open(sys.argv[1])
    snaps = Snapshotter(sys.argv[1] + "/snapshots")
    Builder.load(store, sys.argv[2], snapshots=snaps).commit("test/killed:1")
    """
)


def _ingest_sizes(pid: int, ingest: Path) -> list[int]:
    """Sizes of the files under ``ingest`` that process ``pid`` has open: a named ingest's
    data file, or an anonymous ingest's unnamed O_TMPFILE (seen only through the fd)."""
    sizes = []
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(str(ingest) + "/"):
                    sizes.append(os.stat(fd).st_size)
    return sizes


def test_kill_during_commit_leaves_no_image(kiln_store, snaps, busybox_image, tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    b = new(kiln_store, snaps)
    b.copy(["big"], "/big", context_dir=str(tmp_path))
    images_before = {r.id for r in kiln_store.list_images()}
    blobs_dir = Path(kiln_store.root) / "blobs" / "sha256"
    blobs_before = set(os.listdir(blobs_dir))
    ingest = Path(kiln_store.root) / "ingest"
    proc = subprocess.Popen([sys.executable, "-c", KILLER, kiln_store.root, b.id])
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if any(s > (8 << 20) for s in _ingest_sizes(proc.pid, ingest)):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "commit finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert {r.id for r in kiln_store.list_images()} == images_before
    assert set(os.listdir(blobs_dir)) == blobs_before
    assert list(ingest.iterdir()) == []  # the layer was an unnamed file: nothing left over
    with pytest.raises(NotFound):
        kiln_store.resolve_image("test/killed:1")
    again = Builder.load(kiln_store, b.id, snapshots=snaps)
    assert {c.path for c in again.diff()} == {"/big"}
    assert again.commit("test/killed:1").id


def test_add_url(kiln_store, snaps, busybox_image, tmp_path):
    import http.server
    import threading

    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "file.txt").write_text("downloaded\n")
    os.utime(tmp_path / "srv" / "file.txt", (1_500_000_000, 1_500_000_000))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "srv"), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        b = new(kiln_store, snaps)
        b.add([f"{url}/file.txt"], "/dl/", context_dir=str(tmp_path))
        b.add([f"{url}/file.txt"], "/named", context_dir=str(tmp_path))
        with pytest.raises(NotFound):
            b.add([f"{url}/missing"], "/x", context_dir=str(tmp_path))
        with b.mounted() as root:
            st = os.stat(os.path.join(root, "dl", "file.txt"))
            assert (st.st_mode & 0o777, int(st.st_mtime)) == (0o600, 1_500_000_000)
            with open(os.path.join(root, "named")) as f:
                assert f.read() == "downloaded\n"
            assert not os.path.exists(os.path.join(root, "x"))
    finally:
        server.shutdown()


def test_export(kiln_store, snaps, busybox_image):
    b = new(kiln_store, snaps)
    sh(b, "echo e > /exported")
    buf = io.BytesIO()
    b.export(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = tar.getnames()
    assert "exported" in names and "bin/busybox" in names


def test_step_commits_adopt_an_image_and_history_through_the_builder_api(
    kiln_store, snaps, busybox_image
):
    """What a build relies on: each step commit goes on from the image it made (the upper
    becomes that layer's snapshot, nothing pending is kept), a cache hit is adopted, and
    pending history and the default entry words reach the image."""
    from kiln.image import open_store_image
    from kiln.oci import History

    b = new(kiln_store, snaps)
    base_layers = len(open_store_image(kiln_store, "busybox").layers)
    assert sh(b, "echo 1 > /a")[0] == 0
    b.set_pending_history([History(created_by="ENV X=1", empty_layer=True)])
    first = b.commit_step(created_by="RUN a")
    img = open_store_image(kiln_store, first.id)
    assert len(img.layers) == base_layers + 1
    assert [h.created_by for h in img.config.history[-2:]] == ["ENV X=1", "RUN a"]
    assert b.state.image_id == first.id and b.state.history == [] and b.diff() == []
    old_key = b.state.snapshot_key
    assert sh(b, "echo 2 > /b; cat /a")[1] == "1\n"
    second = b.commit_step(created_by="RUN b")
    assert len(open_store_image(kiln_store, second.id).layers) == base_layers + 2
    assert b.state.snapshot_key != old_key

    b.adopt_image(first.id)  # a cache hit: back on the first step's image, changes dropped
    assert b.state.image_id == first.id and b.diff() == []
    assert sh(b, "cat /a; test -e /b || echo no-b")[1] == "1\nno-b\n"

    b.set_history_defaults(created_by="made by hand", comment="why")
    b.save()
    again = Builder.load(kiln_store, b.id, snapshots=snaps)  # the defaults were persisted
    entry = open_store_image(kiln_store, again.commit().id).config.history[-1]
    assert (entry.created_by, entry.comment) == ("made by hand", "why")
    assert [k for k in snaps.list_active() if b.id in k] == [again.state.snapshot_key]
    again.delete()  # every snapshot the steps made went with it (adopted as layers or removed)
    assert [k for k in snaps.list_active() if b.id in k] == []
