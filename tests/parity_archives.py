"""The docker-archives both API parity suites load into kiln and into the server they
compare it with (dockerd, podman): made here from Debian's busybox, the same bytes each run.

    archives = make_archives(work)   # paths, in the order to load them
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

MTIME = 1_700_000_000
BASE, DATA, MOVED = "busybox:latest", "kiln-test/data:1", "kiln-test/moved:1"
ODD_TIME, NO_TIME = "kiln-test/odd-time:1", "kiln-test/no-time:1"


def make_archives(work: Path) -> list[Path]:
    """docker-archives to load, in order: busybox (labelled, with a comment), a small data
    image, another image as ``MOVED``, then the data image as ``MOVED`` too, which leaves
    the other one without a name (dangling) in both; then two made by hand, whose configs
    have a ``created`` with an offset and a zero-padded fraction, and none."""
    from fixtures_images import make_busybox_rootfs, save_docker_archive
    from kiln.image import import_tarball, open_store_image
    from kiln.store import Store

    rootfs = make_busybox_rootfs(str(work / "busybox.tar"))
    data = work / "data.tar"
    _write_data_tar(data)
    store = Store.open(str(work / "scratch-root"))
    try:
        made = []
        for tar, changes, message, ts in (
            (rootfs, ['CMD ["/bin/sh"]', "LABEL tier=base"], "base", MTIME),
            (str(data), ["WORKDIR /srv"], "", MTIME + 60),
            (str(data), ['ENTRYPOINT ["/x"]'], "old", MTIME + 120),
        ):
            with open(tar, "rb") as f:
                made.append(import_tarball(store, f, changes, message, timestamp=ts).id)
        out = []
        for image_id, name in ((made[0], BASE), (made[1], DATA), (made[2], MOVED), (made[1], MOVED)):  # fmt: skip
            path = work / f"{len(out)}.docker.tar"
            save_docker_archive(open_store_image(store, image_id), str(path), names=(name,))
            out.append(path)
    finally:
        store.close()
    for name, created in ((ODD_TIME, "2023-11-14T23:13:20.500000+00:00"), (NO_TIME, None)):
        path = work / f"{len(out)}.docker.tar"
        path.write_bytes(_hand_made_archive(data.read_bytes(), name, created))
        out.append(path)
    return out


def archive_named(name: str) -> bytes:
    """A docker-archive of one small layer whose ``RepoTags`` is ``[name]`` exactly as
    given (``base``, ``Base:1``: names the loaders are to refuse)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = 6, MTIME
        tf.addfile(info, fileobj=io.BytesIO(b"hello\n"))
    return _hand_made_archive(layer.getvalue(), name, None)


def _hand_made_archive(layer: bytes, name: str, created: str | None) -> bytes:
    """A docker-archive whose config has ``created`` exactly as given (or none at all),
    not as kiln would write it."""
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    if created is not None:
        config["created"] = created
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for member, content in (("layer.tar", layer), (config_name, config_bytes),
                                ("manifest.json", json.dumps(manifest).encode())):  # fmt: skip
            info = tarfile.TarInfo(member)
            info.size, info.mtime = len(content), MTIME
            tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _write_data_tar(path: Path) -> None:
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = 6, MTIME
        tf.addfile(info, fileobj=io.BytesIO(b"hello\n"))


def with_full_names(archive: Path) -> Path:
    """A copy of the docker-archive ``archive`` whose ``RepoTags`` are full references
    (``busybox:latest`` -> ``docker.io/library/busybox:latest``), the names the libpod
    suite asks for: podman 4.3 (and kiln but on the Docker API) puts a short name of an
    archive under ``localhost/``, where dockerd reads Docker Hub."""
    from kiln.oci import Reference

    out = archive.with_name("full-" + archive.name)
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "repositories":
                continue
            if member.name == "manifest.json":
                manifest = json.loads(data)
                for entry in manifest:
                    entry["RepoTags"] = [str(Reference.parse(t)) for t in entry["RepoTags"]]
                data = json.dumps(manifest).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out
