"""Fixtures for build executor tests: a store with busybox, and a helper that builds.

    from build_fixtures import build_env  # noqa: F401  (the fixture)

``build_env`` gives a ``BuildEnv`` with ``.ctx`` (an ops Context on a fresh store holding
``busybox:latest``), ``.events`` (a ListSink) and ``.build(dir, text, **options)``.
"""

from __future__ import annotations

import os
import shutil

import pytest

from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

ROOT_MARKS = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]


class BuildEnv:
    def __init__(self, store, tmp_path):
        from kiln.ops.context import Context
        from kiln.ops.events import ListSink

        self.store = store
        self.events = ListSink()
        self.ctx = Context(store=store, events=self.events)
        self.tmp_path = tmp_path

    def context_dir(self, name: str = "ctx", files: dict[str, str] | None = None) -> str:
        path = self.tmp_path / name
        path.mkdir(exist_ok=True)
        for rel, text in (files or {}).items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return str(path)

    def build(self, context: str, dockerfile: str, **options):
        from kiln.build.options import BuildOptions
        from kiln.ops.build import build

        with open(os.path.join(context, "Containerfile"), "w") as f:
            f.write(dockerfile)
        return build(self.ctx, BuildOptions(context=context, **options))

    def messages(self, type_: str) -> list[str]:
        return [e.message for e in self.events.events if e.data.get("type") == type_]

    def output(self) -> str:
        return "".join(self.messages("run"))

    def image(self, ref: str):
        from kiln.image import open_store_image

        return open_store_image(self.store, ref)

    def validate(self, ref: str):
        from kiln.image import validate_image

        img = self.image(ref)
        validate_image(self.store, img.manifest_digest)
        return img

    def files(self, ref: str) -> dict[str, bytes | str]:
        """Every path in the image's layers (last writer wins): file bytes or a kind."""
        import tarfile

        img = self.image(ref)
        seen: dict[str, bytes | str] = {}
        for desc in img.layers:
            with img.open_layer(desc) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
                for m in tar:
                    name = m.name.lstrip("./")
                    if m.isfile():
                        seen[name] = tar.extractfile(m).read()
                    else:
                        seen[name] = "dir" if m.isdir() else "other"
        return seen

    def layer_bytes(self, ref: str) -> bytes:
        """All layer blobs, decompressed, concatenated (to look for leaked secrets)."""
        import gzip

        img = self.image(ref)
        out = b""
        for desc in img.layers:
            with img.open_layer(desc) as raw:
                data = raw.read()
            out += gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        return out


@pytest.fixture
def build_env(kiln_store, busybox_image, tmp_path):  # noqa: F811
    return BuildEnv(kiln_store, tmp_path)
