"""kiln build vs buildah bud vs BuildKit: every case of tests/differential/cases/.

Each case is built once by each builder (a few cases at a time, in threads, with one
buildah storage and one private dockerd for the whole session); each test then compares
kiln's result with one reference and prints the first differing field. How a case is
written and what is compared: ``tests/differential/bed.py``.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from differential import bed

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]

CASES = bed.load_cases()
BY_NAME = {c.name: c for c in CASES}


def _params():
    out = []
    for case in CASES:
        for ref in bed.REFERENCES:
            marks = []
            if ref in case.expected.bugs:
                reason = "kiln bug: " + case.expected.bugs[ref]
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
            out.append(pytest.param(case.name, ref, id=f"{case.name}-{ref}", marks=marks))
    return out


@pytest.fixture(scope="module")
def diffbed(request, tmp_path_factory):
    pytest.importorskip("kiln.ops.build", reason="kiln.ops.build is not written yet")
    started = time.monotonic()
    jobs = int(os.environ.get("KILN_DIFF_JOBS", "4"))  # cases built at once
    b = bed.Bed(tmp_path_factory.mktemp("diffbed"), buildkit=bed.Dockerd.available(), workers=jobs)
    # build every selected case up front, a few at a time, in the order they will be asked for
    names = []
    for item in request.session.items:
        cs = getattr(item, "callspec", None)
        if item.module.__name__ == __name__ and cs and cs.params.get("name") not in names:
            names.append(cs.params["name"])
    b.schedule([BY_NAME[n] for n in names])
    yield b
    b.close()
    if b.timings:
        total = {
            k: sum(t.get(k, 0) for t in b.timings.values()) for k in ("kiln", "buildah", "buildkit")
        }
        print(
            f"\ndifferential bed: {len(b.timings)} cases in {time.monotonic() - started:.0f}s "
            + ", ".join(f"{k} {v:.0f}s" for k, v in total.items())
        )


@pytest.mark.parametrize(("name", "reference"), _params())
def test_same_as_reference(diffbed, name, reference):
    case = BY_NAME[name]
    if reference == "buildkit" and diffbed.dockerd is None:
        pytest.skip("needs dockerd and the docker 20.10 client (Debian's docker.io)")
    outcomes = diffbed.outcomes(case)
    problem = bed.judge(case, reference, outcomes["kiln"], outcomes[reference],
                        buildah_storage=diffbed.buildah.driver)  # fmt: skip
    assert problem is None, problem
