"""``kiln.run_in_container`` from a script: the environment, user, working directory and
standard streams of one run are keywords (a file or a descriptor takes the output), over
the image's config, for that run only."""

from __future__ import annotations

import io
import os
import shutil

import pytest

import kiln

pytest_plugins = ["fixtures_images"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]

SHOW = 'echo "$FROM_IMAGE $GIVEN $(id -un) $PWD"; echo oops >&2; exit 3'


def test_run_in_container_takes_env_user_workdir_and_streams(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    given, plain, err = tmp_path / "given", tmp_path / "plain", tmp_path / "err"
    with kiln.open_context(kiln_store.root) as ctx:
        box = kiln.create_container(ctx, "busybox")
        kiln.configure_container(ctx, box.name, kiln.ConfigSettings(env=["FROM_IMAGE=1"]))
        with open(given, "w") as stdout, open(err, "wb") as stderr:
            code = kiln.run_in_container(ctx, box.name, ["sh", "-c", SHOW], env=["GIVEN=2"],
                                         user="nobody", workdir="/tmp", stdout=stdout,
                                         stderr=stderr.fileno())  # fmt: skip
        with open(plain, "w") as stdout, open(os.devnull, "w") as stderr:
            kiln.run_in_container(ctx, box.name, ["sh", "-c", SHOW], stdout=stdout, stderr=stderr)
        kiln.remove_containers(ctx, [box.name])
    assert code == 3
    assert given.read_text() == "1 2 nobody /tmp\n"
    assert err.read_text() == "oops\n"
    assert plain.read_text() == "1  root /\n"


def test_in_memory_streams_take_and_give_a_runs_input_and_output(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    """``io.BytesIO``/``io.StringIO`` have no descriptor (as a test runner's captured
    ``sys.stdout``): they were "runtime cannot be started: fileno"."""
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    out, err = io.BytesIO(), io.StringIO()
    big = b"x" * 300_000  # more than a pipe holds: input and output are copied as it runs
    with kiln.open_context(kiln_store.root) as ctx:
        box = kiln.create_container(ctx, "busybox")
        code = kiln.run_in_container(ctx, box.name, ["sh", "-c", "cat; echo é >&2; exit 2"],
                                     stdin=io.BytesIO(big), stdout=out, stderr=err)  # fmt: skip
        unread = kiln.run_in_container(ctx, box.name, ["true"], stdin=io.BytesIO(big))
        kiln.remove_containers(ctx, [box.name])
    assert (code, unread) == (2, 0)
    assert out.getvalue() == big
    assert err.getvalue() == "é\n"
