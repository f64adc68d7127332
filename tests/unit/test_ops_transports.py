"""Transport strings and the events model."""

from __future__ import annotations

import pytest

from kiln.errors import InvalidArgument
from kiln.ops import transports as tp
from kiln.ops.events import CallbackSink, Emitter, Event, ListSink, NullSink


@pytest.mark.parametrize(
    "text, transport, path, ref",
    [
        ("oci:/tmp/lay", "oci", "/tmp/lay", ""),
        ("oci:/tmp/lay:v1", "oci", "/tmp/lay", "v1"),
        ("oci-archive:out.tar:latest", "oci-archive", "out.tar", "latest"),
        ("docker-archive:/a/b.tar", "docker-archive", "/a/b.tar", ""),
        ("docker-archive:b.tar:quay.io/x/y:2", "docker-archive", "b.tar", "quay.io/x/y:2"),
        ("dir:/some/where:odd", "dir", "/some/where:odd", ""),
        ("docker://busybox:1", "docker", "", "busybox:1"),
        ("busybox", "store", "", "busybox"),
        ("localhost:5000/x:1", "store", "", "localhost:5000/x:1"),
    ],
)
def test_parse(text, transport, path, ref):
    parsed = tp.parse_transport(text)
    assert (parsed.transport, parsed.path, parsed.reference) == (transport, path, ref)
    assert str(parsed) == text


def test_bare_name_can_default_to_a_registry():
    assert tp.parse_transport("busybox", default=tp.DOCKER).transport == tp.DOCKER


def test_docker_with_a_tag_is_the_image_named_docker():
    # podman reads ``docker:24`` as the image docker:24 (skopeo, which always wants a
    # transport, refuses it); names_transport agrees
    assert tp.parse_transport("docker:24") == tp.TransportRef(tp.STORE, reference="docker:24")
    assert tp.parse_transport("docker:dind", default=tp.DOCKER) == tp.TransportRef(
        tp.DOCKER, reference="docker:dind"
    )
    assert not tp.names_transport("docker:24")


@pytest.mark.parametrize(
    "text, ref",
    [
        ("docker://quay.io/a/b:1", "quay.io/a/b:1"),
        ("busybox", "busybox"),
        ("docker:24", "docker:24"),
    ],
)
def test_registry_reference_is_the_one_parse(text, ref):
    assert tp.registry_reference(text) == ref


@pytest.mark.parametrize(
    "text, words",
    [("oci:/tmp/lay", "docker://REF"), ("docker://", "missing"), ("docker:a:b", "not an image")],
)
def test_registry_reference_refuses_what_is_no_registry(text, words):
    with pytest.raises(InvalidArgument, match=words):
        tp.registry_reference(text)


@pytest.mark.parametrize(
    "text, words",
    [
        ("containers-storage:busybox", "podman save"),
        ("docker-daemon:busybox:latest", "docker save"),
        ("oci:", "path is missing"),
        ("docker://", "missing"),
        ("docker-archive:x.tar:Not Valid", "reference"),
        ("docker:busybox:1", "registry references are written docker://REF"),
        ("docker:/x", "registry references are written docker://REF"),
        ("", "required"),
    ],
)
def test_refused_with_a_clear_message(text, words):
    with pytest.raises(InvalidArgument, match=words):
        tp.parse_transport(text)


def test_sinks():
    got = []
    sinks = [NullSink(), ListSink(), CallbackSink(got.append)]
    for sink in sinks:
        ev = Emitter(sink)
        ev.step("Copying blob", id="sha256:x")
        ev.progress("sha256:x", 5, 10)
        ev.warning("careful")
        ev.result("Loaded image: a", id="sha256:y")
    listed = sinks[1]
    assert [e.kind for e in listed.events] == ["step", "progress", "warning", "result"]
    assert listed.messages("result") == ["Loaded image: a"]
    assert listed.of_kind("progress")[0].data == {"id": "sha256:x", "current": 5, "total": 10}
    assert got == listed.events
    assert Event("output", "hi").to_json() == {"kind": "output", "message": "hi"}


@pytest.mark.parametrize(
    "text, named",
    [
        ("docker://busybox", True),
        ("oci:/tmp/layout:1", True),
        ("oci-archive:/tmp/x.tar", True),
        ("docker-archive:/tmp/x.tar:app:1", True),
        ("dir:/tmp/d", True),
        ("busybox", False),
        ("localhost:5000/app:1", False),
        ("docker:24", False),  # the image "docker", tag 24
        ("containers-storage:app", False),
    ],
)
def test_names_transport(text, named):
    assert tp.names_transport(text) is named
