"""A runc that public advisories name (CVE-2024-21626, CVE-2025-31133/52565/52881) is
reported once at the start of a build's RUNs or a ``kiln run``: one stderr line naming the
version and the CVEs, never in a JSON output stream, silenced by ``KILN_RUNC_ADVISORY=ignore``.

The runtime is a wrapper that reports an old upstream version and runs the host's runc,
so the test does not depend on which runc this machine has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from fixtures_images import make_busybox_rootfs

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("advisory")
    runc = shutil.which("runc")
    wrapper = tmp / "runc-1.1.11"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "runc version 1.1.11"; echo "spec: 1.0.2"; exit 0; fi\n'
        f'exec {runc} "$@"\n'
    )
    wrapper.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k != "KILN_RUNC_ADVISORY"}
    environ.update(KILN_ROOT=str(tmp / "root"), KILN_RUNTIME_DIR=str(tmp / "run"))

    def kiln(*args, extra=None):
        proc = subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", *args], env={**environ, **(extra or {})},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc

    kiln("import", make_busybox_rootfs(str(tmp / "rootfs.tar")), "busybox")
    ctx = tmp / "ctx"
    ctx.mkdir()
    return kiln, str(wrapper), ctx


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CVE-" in line]


def test_a_build_warns_once_naming_version_and_cves(env):
    kiln, wrapper, ctx = env
    (ctx / "Containerfile").write_text("FROM busybox\nRUN echo one\nRUN echo two\n")
    res = kiln("build", "--no-cache", "--runtime", wrapper, str(ctx))
    lines = _warnings(res.stderr)
    assert len(lines) == 1, res.stderr  # two RUN steps, one line
    assert "runc 1.1.11" in lines[0]
    for cve in ("CVE-2024-21626", "CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"):
        assert cve in lines[0]
    assert "KILN_RUNC_ADVISORY=ignore" in lines[0]
    assert "CVE-" not in res.stdout


def test_json_progress_stays_clean_and_ignore_silences(env):
    kiln, wrapper, ctx = env
    (ctx / "Containerfile").write_text("FROM busybox\nRUN echo json\n")
    res = kiln("--progress", "json", "build", "--no-cache", "--runtime", wrapper, str(ctx))
    assert "CVE-" not in res.stdout and len(_warnings(res.stderr)) == 1
    quiet = kiln("build", "--no-cache", "--runtime", wrapper, str(ctx),
                 extra={"KILN_RUNC_ADVISORY": "ignore"})  # fmt: skip
    assert _warnings(quiet.stderr) == [], quiet.stderr


def test_kiln_run_warns_and_a_build_without_run_does_not(env):
    kiln, wrapper, ctx = env
    cid = kiln("from", "busybox").stdout.strip()
    res = kiln("run", "--runtime", wrapper, cid, "--", "echo", "hello")
    assert res.stdout == "hello\n" and len(_warnings(res.stderr)) == 1
    (ctx / "Containerfile").write_text("FROM busybox\nENV A=b\n")
    assert _warnings(kiln("build", "--runtime", wrapper, str(ctx)).stderr) == []
