"""A user's ``mypy --strict`` checks their calls into kiln: the public names are typed (not
``Any`` through the lazy ``__getattr__``), so a wrong argument is an error in the user's file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kiln

pytest.importorskip("mypy")

GOOD = """\
import kiln

def main(root: str) -> str:
    seen: list[str] = []
    with kiln.open_context(root, events=kiln.CallbackSink(lambda e: seen.append(e.kind))) as ctx:
        opts = kiln.BuildOptions(dockerfile_text="FROM scratch\\n", tags=["x"], build_args={"A": "1"})
        result: kiln.BuildResult = kiln.build(ctx, opts)
        kiln.push_image(ctx, "x", "docker://example.test/x", options=kiln.RegistryOptions(tls_verify=False))
        kiln.configure_container(ctx, "c", kiln.ConfigSettings(env=["A=1"]))
        try:
            kiln.inspect_image(ctx, "missing")
        except kiln.NotFound as exc:
            print(exc.message)
        return result.image_id + " ".join(i.short_id for i in kiln.list_images(ctx))


def not_removed(ctx: kiln.Context) -> list[kiln.KilnError]:  # were list[Exception]
    return kiln.remove_images(ctx, ["x"]).errors


def first_change(ctx: kiln.Context) -> str:  # were Any: "Returning Any from function ..."
    return kiln.diff_container(ctx, "c")[0].path + str(kiln.inspect_container(ctx, "c")["Id"])
"""

BAD = """\
import kiln

with kiln.open_context() as ctx:
    kiln.build(ctx, "Dockerfile")
    n: int = kiln.inspect_image(ctx, "x")
"""


def _mypy(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / name
    script.write_text(text)
    src = os.path.dirname(os.path.dirname(kiln.__file__))
    env = dict(os.environ, MYPYPATH=src)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")  # not the checkout's settings
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), "--config-file", "mypy.ini", str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_user_script_type_checks_strictly_and_its_mistakes_are_errors(tmp_path):
    good = _mypy(tmp_path, "good.py", GOOD)
    assert (good.returncode, good.stdout) == (0, ""), good.stdout + good.stderr
    bad = _mypy(tmp_path, "bad.py", BAD)
    lines = [
        line.split(": error: ")[0] + ": " + line.rsplit("[", 1)[-1]
        for line in bad.stdout.splitlines()
    ]
    assert lines == ["bad.py:4: arg-type]", "bad.py:5: assignment]"], bad.stdout + bad.stderr
