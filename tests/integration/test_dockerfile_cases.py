"""Dockerfile conformance: every case under tests/dockerfile_cases/ built with `kiln build`.

Each case's ``expect.json`` (see ``dockerfile_cases/harness.py``) states the
config, history and file listing the built image must have; they were checked
against ``buildah bud``/``podman build`` where those support the feature.
"""

from __future__ import annotations

import functools
import os
import shutil
import tarfile

import pytest

import image_probe
from dockerfile_cases import harness

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]

CASES = harness.load_cases()


@pytest.fixture(scope="module")
def kiln(tmp_path_factory):
    pytest.importorskip("kiln.ops.build", reason="kiln.ops.build is not written yet")
    work = tmp_path_factory.mktemp("kiln-cases")
    root = str(work / "root")
    harness.make_base_images(root, str(work))
    return harness.Kiln(root, str(work))


def _params():
    out = []
    for name, case in CASES:
        marks = []
        if case.get("xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=case["xfail"]))
        out.append(pytest.param(name, case, id=name, marks=marks))
    return out


def _check_output(case: dict, mapping: dict) -> None:
    out = case["output"]
    path = harness.substitute([out["path"]], mapping)[0]
    kind = out["kind"]
    if kind == "local":
        files = image_probe.dir_listing(path)
    elif kind == "tar":
        files = image_probe.listing([functools.partial(open, path, "rb")])
    else:
        if kind == "oci":
            layout = path + ".d"
            with tarfile.open(path) as tar:
                tar.extractall(layout, filter="data")
            probe = image_probe.oci_layout_image(layout)
        else:
            probe = image_probe.docker_archive_image(path)
        harness.check_config(probe, {"config": out.get("config", {})})
        files = probe.files()
    harness.check_files(files, out["files"], out.get("absent", ()))


@pytest.mark.parametrize(("name", "case"), _params())
def test_dockerfile_case(kiln, tmp_path, name, case):
    tag = f"localhost/case-{name.replace('_', '-')}:latest"
    before = kiln.image_count()
    host_nets = set(os.listdir("/sys/class/net"))
    res, ctx, tmp, mapping = harness.run_case_build(kiln, name, case, tmp_path, tag)
    assert res.returncode == 0, f"kiln build failed:\n{res.stderr.decode()}"
    if "output" in case:
        _check_output(case, mapping)
        return
    probe = kiln.probe(tag)
    harness.check_image(probe, case)
    if case.get("iidfile"):
        iid = (tmp / "iid").read_text().strip()
        assert iid == probe.image_id, f"--iidfile wrote {iid!r}, the image is {probe.image_id}"
    if "host_nets" in case:
        # interfaces that existed during the whole build were all visible to it
        listed = set(probe.read(case["host_nets"]).decode().split())
        steady = host_nets & set(os.listdir("/sys/class/net"))
        assert steady <= listed and listed != {"lo"}, (listed, steady)
    if "rebuild" in case:
        again = f"{tag}-again"
        flags = harness.substitute(case.get("flags", []), mapping) + case["rebuild"]["flags"]
        res2 = kiln.build(ctx, flags, tag=again)
        assert res2.returncode == 0, res2.stderr.decode()
        probe2 = kiln.probe(again)
        assert (probe2.image_id == probe.image_id) == case["rebuild"]["same_id"]
        if "differs" in case["rebuild"]:
            path = case["rebuild"]["differs"]
            assert probe.read(path) != probe2.read(path), f"{path} came from the cache"
    assert kiln.image_count() > before
