"""Working-container state: versioned JSON; foreign or newer state is refused."""

from __future__ import annotations

import pytest

from kiln.container.state import STATE_MARKER, AddedContent, ContainerState
from kiln.errors import InvalidArgument
from kiln.oci import History, ImageConfig, RuntimeConfig


def _state() -> ContainerState:
    config = ImageConfig(
        architecture="amd64",
        config=RuntimeConfig(env=("A=1",), cmd=("sh",), labels={"l": "v"}),
        diff_ids=("sha256:" + "a" * 64,),
        history=(History(created_by="base"),),
    )
    return ContainerState(
        image_id="sha256:" + "b" * 64,
        image_name="busybox",
        config=config,
        snapshot_key="kiln-container-x",
        parent_chain_id="sha256:" + "a" * 64,
        mount_point="/m",
        history=[History(created_by="ENV A=1", empty_layer=True)],
        annotations={"k": "v"},
        format="docker",
        added=[AddedContent("copy", ["a"], "/b", "sha256:" + "c" * 64)],
        created_by="me",
    )


def test_round_trip():
    state = _state()
    obj = state.to_json()
    assert obj[STATE_MARKER] == 1
    back = ContainerState.from_json(obj)
    assert back.to_json() == obj
    assert back.config.config.cmd == ("sh",)
    assert back.history[0].empty_layer
    assert back.added[0].digest.startswith("sha256:")


@pytest.mark.parametrize("obj", [{}, {"image_id": None}, [], "x", None])
def test_foreign_state_refused(obj):
    with pytest.raises(InvalidArgument, match="not made by kiln"):
        ContainerState.from_json(obj)


def test_newer_version_refused():
    obj = _state().to_json()
    obj[STATE_MARKER] = 99
    with pytest.raises(InvalidArgument, match="newer kiln"):
        ContainerState.from_json(obj)


def test_damaged_state_refused():
    obj = _state().to_json()
    del obj["snapshot_key"]
    with pytest.raises(InvalidArgument, match="damaged"):
        ContainerState.from_json(obj)
    obj = _state().to_json()
    obj["format"] = "tarball"
    with pytest.raises(InvalidArgument):
        ContainerState.from_json(obj)
