"""The README's library examples run as written (its ``## As a library`` section), against a
store of their own holding ``demo/busybox`` (as ``scripts/demo`` leaves it) and a local
registry in place of ``localhost:5000``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

import kiln
from fixtures_images import make_busybox_rootfs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]


def library_snippets() -> list[str]:
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text.split("\n## As a library\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_library_section_has_its_examples():
    assert len(library_snippets()) == 3


def test_the_readme_library_examples_run(tmp_path, registry_plain):
    root = str(tmp_path / "root")
    with kiln.open_context(root) as ctx:
        rootfs = make_busybox_rootfs(str(tmp_path / "busybox.tar"))
        kiln.import_image(ctx, rootfs, "demo/busybox", changes=['CMD ["/bin/sh"]'])
    work = tmp_path / "work"
    shutil.copytree(os.path.join(REPO, "examples"), work / "examples")
    src = os.path.dirname(os.path.dirname(kiln.__file__))
    env = dict(os.environ, KILN_ROOT=root, KILN_RUNTIME_DIR=str(tmp_path / "rt"),
               PYTHONPATH=src, KILN_RUNC_ADVISORY="ignore")  # fmt: skip
    outputs = []
    for snippet in library_snippets():
        code = snippet.replace("localhost:5000", registry_plain.host)
        done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, f"{snippet}\n{done.stdout}{done.stderr}"
        outputs.append(done.stdout)
    first, second, third = outputs
    assert "['localhost/hello:latest']" in first
    assert "|1 WHO=kiln /bin/sh -c echo hello $WHO > /greeting" in second.splitlines()
    assert third.splitlines() == [
        'Error: building at STEP "RUN exit 3": while running runtime: exit status 3 '
        "(Containerfile:2) 3",
        "Error: no-such-image: image not known",
        "cancelled",
    ]
    assert (work / "hi.txt").read_text() == "hi\n"
    with kiln.open_context(root) as ctx:
        names = {n for image in kiln.list_images(ctx) for n in image.names}
    assert {"localhost/greeting:1", "localhost/hi:1", "localhost/hello:latest"} <= names
    assert f"{registry_plain.host}/busybox:1" in names
    with kiln.open_context(root) as ctx:  # the pushed list, read back from the registry
        multi = f"{registry_plain.host}/busybox:multi"
        http = kiln.RegistryOptions(tls_verify=False)
        kiln.pull_image(ctx, kiln.PullRequest.of(multi, all_platforms=True, options=http))
        listed = [m["digest"] for m in kiln.inspect_manifest_list(ctx, multi)["manifests"]]
        assert listed == [kiln.inspect_image(ctx, "demo/busybox")["Digest"]]
