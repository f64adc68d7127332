"""``FROM oci-archive:/x.tar`` (and ``docker-archive:``, ``oci:``, ``dir:``): a base image
read from a file, as buildah reads it, every build (no registry, no name in the store).
A path that is not there is one clear error naming it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


def kiln(root, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "kiln.cli.main", "--root", str(root), *args],
                         capture_output=True, text=True, timeout=240)  # fmt: skip
    if check:
        assert res.returncode == 0, (args, res.stderr)
    return res


def layers(root, image: str) -> list[str]:
    doc = json.loads(kiln(root, "inspect", image).stdout)
    return (doc[0] if isinstance(doc, list) else doc)["RootFS"]["Layers"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("from-file")
    ctx = tmp / "base"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM scratch\nCOPY f /f\n")
    (ctx / "f").write_text("from the base\n")
    kiln(tmp / "root", "build", "-q", "-t", "base:1", str(ctx))
    return tmp


@pytest.mark.parametrize(
    ("fmt", "transport"),
    [("oci-archive", "oci-archive"), ("docker-archive", "docker-archive"),
     ("oci-dir", "oci"), ("docker-dir", "dir")],
)  # fmt: skip
def test_from_an_image_file(base, fmt, transport):
    saved = base / f"base-{fmt}"
    kiln(base / "root", "save", "--format", fmt, "-o", str(saved), "base:1")
    root = base / f"root-{fmt}"  # an empty store: the base comes only from the file
    ctx = base / f"ctx-{fmt}"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(f"FROM {transport}:{saved}\nCOPY g /g\n")
    (ctx / "g").write_text("mine\n")
    kiln(root, "build", "-q", "-t", "child:1", str(ctx))
    base_layers = layers(base / "root", "base:1")
    got = layers(root, "child:1")
    assert got[: len(base_layers)] == base_layers and len(got) == len(base_layers) + 1


def test_a_missing_file_is_one_clear_error(base):
    ctx = base / "ctx-missing"
    ctx.mkdir()
    missing = base / "nowhere.tar"
    (ctx / "Containerfile").write_text(f"FROM oci-archive:{missing}\n")
    res = kiln(base / "root-missing", "build", "-t", "x:1", str(ctx), check=False)
    assert res.returncode != 0
    assert str(missing) in res.stderr and "Traceback" not in res.stderr
    assert kiln(base / "root-missing", "images", "-q").stdout.strip() == ""
