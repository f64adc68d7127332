"""First contact, the parts that need root: `kiln info` on a real store, runtime and
overlayfs; a read-only --root; the 127-layer guard of `kiln build` and `kiln commit`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]

GUARD = "layers, more than the 127 an image may have"


def kiln(root, *args, env=None, timeout=300) -> subprocess.CompletedProcess:
    environ = dict(os.environ, KILN_ROOT=str(root), **(env or {}))
    environ.pop("SOURCE_DATE_EPOCH", None)
    return subprocess.run([sys.executable, "-m", "kiln.cli.main", *args], env=environ,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def layer_count(root, image) -> int:
    proc = kiln(root, "inspect", image)
    assert proc.returncode == 0, proc.stderr
    return len(json.loads(proc.stdout)[0]["RootFS"]["Layers"])


def copy_context(tmp_path, steps: int):
    """A FROM scratch Containerfile of ``steps`` COPY steps of tiny files: one layer each."""
    ctx = tmp_path / f"ctx{steps}"
    ctx.mkdir()
    lines = ["FROM scratch"]
    for i in range(1, steps + 1):
        (ctx / f"f{i}").write_text(f"{i}\n")
        lines.append(f"COPY f{i} /")
    (ctx / "Containerfile").write_text("\n".join(lines) + "\n")
    return ctx


def test_info_reports_store_runtime_snapshotter_and_registries(tmp_path):
    root = tmp_path / "root"
    proc = kiln(root, "info", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    runc_version = subprocess.run(["runc", "--version"], capture_output=True, text=True,
                                  timeout=30, check=True).stdout.splitlines()[0]  # fmt: skip
    assert info["host"]["ociRuntime"]["version"] == runc_version
    assert info["host"]["ociRuntime"]["path"] == shutil.which("runc")
    assert isinstance(info["host"]["emulators"], list)
    store = info["store"]
    assert store["graphRoot"] == str(root)
    assert store["graphDriverName"] == "overlay"
    assert store["graphStatus"]["Overlay Works"] is True
    assert store["graphRootSize"] > 0 and store["imageStore"] == {"number": 0}
    assert info["version"]["Version"]
    conf = tmp_path / "registries.conf"
    conf.write_text(
        'unqualified-search-registries = ["example.test"]\n'
        '[[registry]]\nlocation = "example.test"\ninsecure = true\n'
    )
    env = {"CONTAINERS_REGISTRIES_CONF": str(conf), "KILN_SNAPSHOT_DRIVER": "copy"}
    proc = kiln(root, "info", "--format", "json", env=env)
    info = json.loads(proc.stdout)
    assert info["registries"]["files"][0] == str(conf)
    assert info["registries"]["search"] == ["example.test"]
    assert info["registries"]["registries"]["example.test"]["insecure"] is True
    assert info["store"]["graphDriverName"] == "copy"  # forced, but overlay still works here
    assert info["store"]["graphStatus"]["Overlay Works"] is True
    proc = kiln(root, "info", "--format", "{{.Store.GraphRoot}} {{.Host.OciRuntime.Name}}")
    assert proc.stdout == f"{root} runc\n"
    text = kiln(root, "info").stdout.splitlines()
    assert [line for line in text if not line.startswith(" ")] == [
        "host:", "store:", "registries:", "version:"
    ]  # fmt: skip
    assert f"  graphRoot: {root}" in text


def test_read_only_root_is_one_error_line(tmp_path):
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    assert kiln(src / "store", "images").returncode == 0  # a store exists there
    subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(ro)], check=True, timeout=30)
    try:
        for root, why in ((ro / "store", "is not writable"), (ro / "new", "Read-only file system")):
            proc = kiln(root, "images")
            assert proc.returncode == 125
            assert proc.stderr.startswith(f"Error: cannot use {root} as the store root: ")
            assert why in proc.stderr and proc.stderr.count("\n") == 1
    finally:
        subprocess.run(["umount", str(ro)], check=True, timeout=30)


@pytest.fixture(scope="module")
def deep_root(tmp_path_factory):
    """One store for both 127-layer tests: the second builds its 127 layers from the cache
    the first left (each test also passes alone, or in the other order)."""
    return tmp_path_factory.mktemp("deep") / "root"


@pytest.mark.slow
def test_build_of_128_layers_fails_before_committing_and_squash_builds_it(tmp_path, deep_root):
    root = deep_root
    ctx = copy_context(tmp_path, 128)
    proc = kiln(root, "build", "-t", "deep", str(ctx))
    assert proc.returncode == 125
    assert proc.stderr.splitlines()[-1] == (
        f"Error: the image would have 128 {GUARD} (Docker and some storage drivers cannot "
        "use more): squash it (--squash) or make fewer layers (fewer or joined RUN, COPY and "
        "ADD steps)"
    )
    assert "STEP 129/129: COPY f128 /" in proc.stdout
    assert kiln(root, "image", "exists", "deep").returncode == 1
    # the 127 steps before it are cached: a Containerfile one step shorter builds at once
    text = (ctx / "Containerfile").read_text()
    (ctx / "Containerfile").write_text("\n".join(text.splitlines()[:-1]) + "\n")
    proc = kiln(root, "build", "-t", "deep127", str(ctx))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("--> Using cache") == 127
    assert layer_count(root, "deep127") == 127
    (ctx / "Containerfile").write_text(text)
    proc = kiln(root, "build", "--squash", "-t", "deep", str(ctx))
    assert proc.returncode == 0, proc.stderr
    assert layer_count(root, "deep") == 1


@pytest.mark.slow
def test_commit_of_a_128th_layer_fails_and_squash_commits(tmp_path, deep_root):
    root = deep_root
    ctx = copy_context(tmp_path, 127)
    assert kiln(root, "build", "-q", "-t", "deep127", str(ctx)).returncode == 0
    cid = kiln(root, "from", "deep127").stdout.strip()
    (tmp_path / "extra").write_text("x\n")
    proc = kiln(root, "copy", cid, str(tmp_path / "extra"), "/extra")
    assert proc.returncode == 0, proc.stderr
    proc = kiln(root, "commit", cid, "deeper")
    assert proc.returncode == 125
    assert proc.stderr.startswith(f"Error: the image would have 128 {GUARD}")
    assert kiln(root, "image", "exists", "deeper").returncode == 1
    proc = kiln(root, "commit", "--squash", cid, "deeper")
    assert proc.returncode == 0, proc.stderr
    assert layer_count(root, "deeper") == 1
