"""kiln build vs `buildah bud --runtime runc --layers`: same Containerfile, same base image.

For every case in tests/dockerfile_cases/ marked ``"parity": true``, both
builders build it against the same busybox (and data) images; the config fields
a Dockerfile sets, the history ``created_by`` strings (content hashes masked),
the layer count and the full file listing (path, type, mode, owner, size,
sha256, link target; mtimes aside) must be equal. Mount points that buildah's
runtime leaves empty in RUN layers (/dev, /proc, /etc/hosts, ...) are ignored.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from dockerfile_cases import harness

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]

PARITY = [(n, c) for n, c in harness.load_cases() if c.get("parity")]
DOC_KEYS = ("architecture", "os", "author")


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    work = tmp_path_factory.mktemp("parity")
    root = str(work / "kiln-root")
    archives = harness.make_base_images(root, str(work))
    return work, root, archives


@pytest.fixture(scope="module")
def buildah(bases):
    work, _, archives = bases
    b = harness.Buildah(str(work / "buildah"))
    b.load(archives)
    yield b
    b.close()


@pytest.fixture(scope="module")
def kiln(bases):
    pytest.importorskip("kiln.ops.build", reason="kiln.ops.build is not written yet")
    work, root, _ = bases
    return harness.Kiln(root, str(work))


@pytest.fixture(scope="module")
def base_files(buildah):
    return buildah.probe(harness.BASE).files()


def _params():
    out = []
    for name, case in PARITY:
        marks = []
        if case.get("parity_xfail"):
            marks.append(pytest.mark.xfail(strict=True, reason=case["parity_xfail"]))
        out.append(pytest.param(name, case, id=name, marks=marks))
    return out


def _build(tool, name, case, tmp_path, sub):
    tag = f"localhost/parity-{name.replace('_', '-')}:latest"
    dest = tmp_path / sub
    dest.mkdir()
    res, *_ = harness.run_case_build(tool, name, case, dest, tag)
    assert res.returncode == 0, f"{sub} build failed:\n{res.stderr.decode()}"
    return tool.probe(tag)


def _diff(a: dict, b: dict) -> list[str]:
    out = []
    for path in sorted(set(a) | set(b)):
        ea, eb = a.get(path), b.get(path)
        if ea != eb:
            out.append(f"{path}: kiln={ea and ea.describe()} buildah={eb and eb.describe()}")
    return out


@pytest.mark.parametrize(("name", "case"), _params())
def test_parity_with_buildah(kiln, buildah, base_files, tmp_path, name, case):
    # the two builds are independent (own stores, contexts and runtime state): buildah's,
    # mostly waiting on its storage, runs beside kiln's instead of before it
    with ThreadPoolExecutor(1) as pool:
        theirs_built = pool.submit(_build, buildah, name, case, tmp_path, "buildah")
        ours = _build(kiln, name, case, tmp_path, "kiln")
        theirs = theirs_built.result(timeout=600)
    assert harness.parity_config(ours) == harness.parity_config(theirs)
    for key in DOC_KEYS:
        assert ours.config_doc.get(key) == theirs.config_doc.get(key), key
    their_history = harness.masked_history(theirs)
    if "parity_unlisted_args" in case:
        their_history = harness.without_arg_names(
            their_history, case["parity_unlisted_args"]["names"]
        )
    assert harness.masked_history(ours) == their_history
    assert ours.layer_count == theirs.layer_count
    differences = _diff(
        harness.parity_files(ours, base_files), harness.parity_files(theirs, base_files)
    )
    assert not differences, "file listings differ:\n" + "\n".join(differences[:40])
