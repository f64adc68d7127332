"""Git build contexts, kiln vs buildah vs BuildKit: the same repository (served by
``git http-backend`` on 127.0.0.1) built from ``URL#ref:subdir`` by the three builders, the
images compared as the differential bed compares them (``tests/differential/bed.py``).

The bed's cases are directories; a git source needs a live server, so these live here.
``ADD <git URL>`` itself has no reference on this machine (buildah 1.28 and dockerd
20.10's Dockerfile frontend predate it); its behaviour is BuildKit's as documented, tested
in ``test_build_add_git.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from differential import bed
from git_repos import commit, have_git, make_repo, push
from git_server import GitHttpServer

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
    pytest.mark.skipif(shutil.which("buildah") is None, reason="needs buildah"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
    pytest.mark.skipif(not have_git(), reason="needs git"),
    pytest.mark.timeout(900),
]

FILES = {
    "README": "top\n",
    "app/Dockerfile": "FROM busybox\nCOPY . /ctx/\nRUN ls -la /ctx > /listing\n",
    "app/run.sh": ("#!/bin/sh\necho run\n", 0o755),
    "app/conf/settings": "a=1\n",
    "app/link": ("->", "conf/settings"),
}


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    work = tmp_path_factory.mktemp("gitdiff")
    b = bed.Bed(work, buildkit=bed.Dockerd.available(), workers=1)
    srv = work / "srv"
    repo = make_repo(srv / "app.git", FILES)
    work_tree = repo.with_suffix(".work")
    commit(work_tree, {"Dockerfile": "FROM busybox\nCOPY . /whole/\n"})
    push(repo, "main")
    with GitHttpServer(srv) as http:
        yield b, http
    b.close()


def outcomes(b: bed.Bed, name: str, url: str) -> dict[str, bed.Outcome]:
    case = bed.Case(name, bed.CASES_DIR, bed.Expected(), [])
    out = {}
    for builder in ("kiln", "buildah", "buildkit"):
        if builder == "buildkit" and b.dockerd is None:
            continue
        started = time.monotonic()
        out[builder] = b._build_one(builder, case, url, [])
        assert time.monotonic() - started < 300
    return out


def _without(diffs: list, *paths: str) -> list:
    """The differences but buildah's known ones: the paths under ``paths`` (in the merged
    tree, ``files:``, and in the layer that wrote them, ``layers:N:``), and the
    container_config buildah writes into every image (``bed.EVERY_CASE``)."""
    known = tuple(paths)

    def is_known(name: str) -> bool:
        if name in bed.EVERY_CASE["buildah"]:
            return True
        path = re.sub(r"^(files|layers:\d+):", "", name)
        return path != name and path.startswith(known)

    return [d for d in diffs if not is_known(d[0])]


@pytest.mark.parametrize("reference", bed.REFERENCES)
def test_git_context_with_ref_and_subdir(refs, reference):
    b, http = refs
    if reference == "buildkit" and b.dockerd is None:
        pytest.skip("needs dockerd and the docker 20.10 client (Debian's docker.io)")
    got = outcomes(b, f"git-subdir-{reference}", f"{http.url('app.git')}#main:app")
    assert got["kiln"].ok, got["kiln"].log
    if reference == "buildkit":
        # a recorded difference: BuildKit 0.8 (dockerd 20.10) has no subdir for git
        # contexts; kiln builds it as buildah and current BuildKit do
        assert not got["buildkit"].ok and "subdir not supported" in got["buildkit"].log
        return
    diffs = bed.compare(got["kiln"], got[reference])
    if reference == "buildah":
        # buildah keeps the clone's .git in the context; kiln leaves it out as BuildKit
        # does (BUILDKIT_CONTEXT_KEEP_GIT_DIR=1 keeps it)
        diffs = _without(diffs, "/ctx/.git", "/listing")
    assert diffs == [], diffs[:3]


@pytest.mark.parametrize("reference", bed.REFERENCES)
def test_git_context_default_branch(refs, reference):
    b, http = refs
    if reference == "buildkit" and b.dockerd is None:
        pytest.skip("needs dockerd and the docker 20.10 client (Debian's docker.io)")
    # BuildKit 0.8 (dockerd 20.10) reads "no ref" as master, not the remote's HEAD (current
    # BuildKit, buildah and kiln take HEAD): it is asked for the branch by name
    url = http.url("app.git") + ("#main" if reference == "buildkit" else "")
    got = outcomes(b, f"git-whole-{reference}", url)
    assert got["kiln"].ok, got["kiln"].log
    diffs = bed.compare(got["kiln"], got[reference])
    if reference == "buildah":
        diffs = _without(diffs, "/whole/.git")
    assert diffs == [], diffs[:3]
