"""A push shows its layers' bytes going out, as a pull shows them coming in: progress events
(id = the blob's digest) every MiB or so, ending at the blob's size; small pushes as before."""

from __future__ import annotations

import json

import pytest

from kiln.cli.main import run
from random_rootfs import random_rootfs_tar
from registry_env import isolate_registry_env

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

LAYER_BYTES = 6 << 20  # random: the compressed layer is as large


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    isolate_registry_env(tmp_path, monkeypatch, home=tmp_path / "home")
    monkeypatch.delenv("KILN_ROOT", raising=False)


def _kiln(capsys, *args: str) -> str:
    capsys.readouterr()
    code = run(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_a_push_reports_the_bytes_of_a_large_layer_as_it_sends_them(
    tmp_path, capsys, registry_plain
):
    root = str(tmp_path / "root")
    _kiln(
        capsys,
        "--root",
        root,
        "import",
        random_rootfs_tar(tmp_path / "big.tar", LAYER_BYTES),
        "big:1",
    )
    ref = f"{registry_plain.host}/push-progress/big:1"
    out = _kiln(capsys, "--root", root, "--progress", "json", "push", "--tls-verify=false",
                "big:1", ref)  # fmt: skip
    events = [json.loads(line) for line in out.splitlines()]
    started = [e["data"]["id"] for e in events
               if e["kind"] == "step" and e["message"].startswith("Copying blob ")
               and e["data"].get("state") == "start"]  # fmt: skip
    assert len(started) == 1  # the one layer
    layer = started[0]
    progress = [e["data"] for e in events if e["kind"] == "progress"]
    assert progress and all(p["id"] == layer for p in progress)
    currents = [p["current"] for p in progress]
    assert len(currents) >= 3 and currents == sorted(set(currents))
    size = progress[-1]["total"]
    assert size > LAYER_BYTES and currents[-1] == size  # the bar ends full
    assert len(currents) <= size // (1 << 20) + 2  # not one per read
    done = [i for i, e in enumerate(events) if e["message"] == f"Copying blob {layer} done"]
    assert done and done[0] > max(i for i, e in enumerate(events) if e["kind"] == "progress")
