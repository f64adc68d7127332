"""save, load and a push to a file transport show a large layer's bytes as they go, as a
pull does: progress events (id = the layer's digest) every MiB or so, ending at its size."""

from __future__ import annotations

import json
import os

import pytest

from kiln.cli.main import run
from random_rootfs import random_rootfs_tar

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

LAYER_BYTES = 6 << 20  # random: compressed, the layer is as large


def _progress(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    code = run(["--progress", "json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return [e["data"] for e in map(json.loads, out.splitlines()) if e["kind"] == "progress"]


def _assert_one_layer_went_by(progress: list[dict]) -> None:
    big = [p for p in progress if p["total"] > LAYER_BYTES]
    assert big, progress
    assert {p["id"] for p in big} == {big[0]["id"]}
    currents = [p["current"] for p in big]
    assert len(currents) >= 3 and currents == sorted(set(currents))
    assert currents[-1] == big[-1]["total"]  # the bar ends full
    assert len(currents) <= big[-1]["total"] // (1 << 20) + 2  # not one per read


def test_save_load_and_a_file_push_show_the_bytes_of_a_large_layer(tmp_path, capsys):
    root = ("--root", str(tmp_path / "root"))
    assert (
        run([*root, "import", "-q", random_rootfs_tar(tmp_path / "big.tar", LAYER_BYTES), "big:1"])
        == 0
    )
    saved = str(tmp_path / "saved.tar")
    _assert_one_layer_went_by(_progress(capsys, *root, "save", "-o", saved, "big:1"))
    other = ("--root", str(tmp_path / "other"))
    _assert_one_layer_went_by(_progress(capsys, *other, "load", "-i", saved))
    oci = f"oci-archive:{tmp_path / 'out.tar'}"
    _assert_one_layer_went_by(_progress(capsys, *root, "push", "big:1", oci))


def test_import_shows_how_much_of_the_tarball_it_has_read(tmp_path, capsys):
    tarball = random_rootfs_tar(tmp_path / "big.tar", LAYER_BYTES)
    progress = _progress(capsys, "--root", str(tmp_path / "root"), "import", tarball, "big:1")
    assert progress and {p["id"] for p in progress} == {tarball}
    currents = [p["current"] for p in progress]
    assert len(currents) >= 3 and currents == sorted(set(currents))
    assert currents[-1] == progress[-1]["total"] == os.path.getsize(tarball)


def _events(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return [e["data"] for e in map(json.loads, lines) if e["kind"] == "progress"]


def _assert_bytes_went_by(progress: list[dict], at_least: int) -> None:
    assert progress and len({p["id"] for p in progress}) == 1, progress
    currents = [p["current"] for p in progress]
    assert len(currents) >= 3 and currents == sorted(set(currents))
    assert currents[-1] == progress[-1]["total"] >= at_least  # the bar ends full
    assert all(p["total"] is None for p in progress[:-1])  # a size not known before
    assert len(currents) <= currents[-1] // (1 << 20) + 2  # not one per write


def test_commit_and_export_show_the_bytes_they_write(tmp_path, capsys):
    root = ("--root", str(tmp_path / "root"))
    tarball = random_rootfs_tar(tmp_path / "big.tar", LAYER_BYTES)
    assert run([*root, "import", "-q", tarball, "big:1"]) == 0
    assert run([*root, "from", "--name", "work", "big:1"]) == 0
    more = tmp_path / "more"
    more.write_bytes(os.urandom(LAYER_BYTES))
    assert run([*root, "copy", "work", str(more), "/more"]) == 0
    capsys.readouterr()
    assert run([*root, "--progress", "json", "commit", "work", "big:2"]) == 0
    out, err = capsys.readouterr()
    _assert_bytes_went_by(_events(out), LAYER_BYTES)
    assert out.splitlines()[-1] == run_id(tmp_path, "big:2"), out  # the ID still last
    tar = tmp_path / "fs.tar"
    assert run([*root, "--progress", "json", "export", "-o", str(tar), "work"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    _assert_bytes_went_by(_events(err), 2 * LAYER_BYTES)
    assert _events(err)[-1]["current"] == os.path.getsize(tar)
    assert run([*root, "--progress", "plain", "export", "-o", str(tar), "work"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[-1].startswith("Exporting work: ") and err.endswith(" done\n"), err
    assert len(err.splitlines()) < 2 * LAYER_BYTES >> 20  # a line every 2 s, not every MiB


def run_id(tmp_path, name: str) -> str:
    from kiln.store import Store

    store = Store.open(str(tmp_path / "root"))
    try:
        return store.resolve_image(name).id.removeprefix("sha256:")
    finally:
        store.close()
