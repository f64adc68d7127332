"""A failed write to what the user named (``-o FILE``, standard output) is one error line
naming that output, never a full disk blamed on kiln's store; a reader that went away
(``kiln save x | head -c1``) ends the command quietly, as it does other tools.

The CLI runs as a process so that its standard output is a real descriptor (``/dev/full``,
a pipe with no reader).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from ops_image_factory import make_image

from kiln.store import Store

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")

FULL_STDOUT = "Error: writing standard output: no space left on device\n"


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "root")
    store = Store.open(root)
    try:
        make_image(store, ["a", "b"], ["a:1"], size=256 * 1024)
    finally:
        store.close()
    return root


def kiln(root, *args, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("KILN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", "--progress", "quiet", "--root", root, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_to_a_full_device_names_the_device(root, fmt):
    res = kiln(root, "save", "--format", fmt, "-o", "/dev/full", "a:1")
    assert (res.returncode, res.stderr) == (
        125,
        "Error: writing /dev/full: no space left on device\n",
    )


def test_save_to_a_full_standard_output_names_it(root):
    with open("/dev/full", "wb") as full:
        res = kiln(root, "save", "a:1", stdout=full)
    assert (res.returncode, res.stderr) == (125, FULL_STDOUT)


def test_a_listing_to_a_full_standard_output_names_it(root):
    with open("/dev/full", "wb") as full:
        res = kiln(root, "images", stdout=full)
    assert (res.returncode, res.stderr) == (125, FULL_STDOUT)


@pytest.mark.parametrize("args", [("save", "a:1"), ("images",), ("inspect", "a:1")])
def test_a_reader_that_went_away_ends_the_command_quietly(root, args):
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first byte: every write meets a closed pipe
    try:
        res = kiln(root, *args, stdout=w)
    finally:
        os.close(w)
    # 141: what a shell shows for podman, killed by the SIGPIPE, whatever the verb was doing
    assert (res.returncode, res.stderr) == (141, "")
