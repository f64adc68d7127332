"""kiln's ``io.podman.varlink`` against the methods that serve it, and the lazy import
of the ``varlink`` package."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import kiln.api

varlink = pytest.importorskip("varlink")
from varlink.scanner import Interface, _Method, _Struct  # noqa: E402

IDL = Path(kiln.api.__file__).with_name("io.podman.varlink")
# podman's image methods (and what kiln adds around them) that kiln serves
SERVED = [
    "ListImages",
    "ListImagesWithFilters",
    "GetImage",
    "BuildImage",
    "InspectImage",
    "HistoryImage",
    "PushImage",
    "TagImage",
    "UntagImage",
    "RemoveImage",
    "RemoveImageWithResponse",
    "SearchImages",
    "DeleteUnusedImages",
    "Commit",
    "ImportImage",
    "ExportImage",
    "PullImage",
    "ImageExists",
    "ImageTree",
    "ImagesPrune",
    "ImageSave",
    "LoadImage",
    "Diff",
    "GetLayersMapWithImageInfo",
    "BuildImageHierarchyMap",
    "ContainerRunlabel",
]


def interface() -> Interface:
    return Interface(IDL.read_text())


def handler_class():
    from kiln.api.varlink_images import ImageMethods
    from kiln.api.varlink_service import PodmanImageService
    from kiln.api.varlink_transfer import TransferMethods

    class Handler(ImageMethods, TransferMethods, PodmanImageService):
        pass

    return Handler


def test_every_method_of_the_description_is_served_with_its_parameters_in_order():
    iface = interface()
    assert iface.name == "io.podman"
    methods = {n: m for n, m in iface.members.items() if isinstance(m, _Method)}
    assert sorted(methods) == sorted(SERVED)
    handler = handler_class()
    for name, method in methods.items():
        fn = getattr(handler, name)
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        declared = list(method.in_type.fields)
        # the varlink package passes parameters by position, in the description's order
        assert [p for p in params if not p.startswith("_")] == declared, name


def test_the_image_struct_reply_has_every_declared_field():
    from kiln.api.varlink_images import _image

    summary = SimpleNamespace(
        id="sha256:" + "a" * 64, digest="sha256:" + "b" * 64, parent_id="",
        repo_digests=["r/x@sha256:" + "c" * 64], names=["localhost/x:1"], created="2024-01-01T00:00:00Z",
        size=5, containers=0, labels={"k": "v"}, has_children=False,
    )  # fmt: skip
    record = SimpleNamespace(layers=["sha256:" + "d" * 64])
    image = _image(summary, record)
    struct = interface().members["Image"].type
    assert isinstance(struct, _Struct) and set(image) == set(struct.fields)
    assert image["id"] == "a" * 64 and image["digests"] == [
        "sha256:" + "b" * 64,
        "sha256:" + "c" * 64,
    ]


def test_left_out_parameters_get_zero_values_as_podman_gave_them():
    from kiln.api.varlink_params import checked_call

    idl = interface()
    call = {"method": "io.podman.PushImage", "parameters": {"name": "x", "signBy": None}}
    assert checked_call(idl, call)["parameters"] == {
        "name": "x", "tag": "", "compress": False, "format": "", "removeSignatures": False,
        "signBy": "",
    }  # fmt: skip
    search = checked_call(idl, {"method": "io.podman.SearchImages"})["parameters"]
    assert search == {"query": "", "filter": {"star_count": 0}}  # ?int and ?bool: left out
    build = checked_call(idl, {"method": "io.podman.BuildImage", "parameters": {"build": {}}})
    assert build["parameters"]["build"]["buildOptions"]["memory"] == 0
    assert build["parameters"]["build"]["dockerfiles"] == []
    other = {"method": "org.varlink.service.GetInfo"}
    assert checked_call(idl, other) == other


@pytest.mark.parametrize(
    "method, parameters, path",
    [
        ("ListImagesWithFilters", {"filters": "dangling=true"}, "filters"),
        ("ListImagesWithFilters", {"filters": ["dangling=true", 1]}, "filters[1]"),
        ("GetImage", {"id": 5}, "id"),
        ("GetImage", {"id": "x", "bogus": 1}, "bogus"),
        ("BuildImage", {"build": "x"}, "build"),
        ("BuildImage", {"build": {"label": "a=b"}}, "build.label"),
        ("BuildImage", {"build": {"dockerfile": ["Dockerfile"]}}, "build.dockerfile"),
        ("BuildImage", {"build": {"buildOptions": "x"}}, "build.buildOptions"),
        ("BuildImage", {"build": {"buildOptions": {"memory": 1.5}}}, "build.buildOptions.memory"),
        ("BuildImage", {"build": {"buildOptions": {"memory": True}}}, "build.buildOptions.memory"),
        ("BuildImage", {"build": {"buildArgs": {"A": 1}}}, "build.buildArgs[A]"),
        ("BuildImage", {"build": {"buildArgs": ["A=1"]}}, "build.buildArgs"),
        ("SearchImages", {"query": "x", "filter": "a"}, "filter"),
        ("SearchImages", {"query": "x", "limit": 1 << 63}, "limit"),
        ("SearchImages", {"query": "x", "filter": {"is_official": 1}}, "filter.is_official"),
        ("ImagesPrune", {"all": 1}, "all"),
        ("ImageSave", {"options": {"name": "x", "moreTags": "y"}}, "options.moreTags"),
        ("ExportImage", {"name": "x", "destination": "d", "tags": "y"}, "tags"),
        ("ImportImage", {"source": "s", "changes": "CMD x"}, "changes"),
        ("PullImage", {"name": "x", "creds": ["u", "p"]}, "creds"),
        ("ContainerRunlabel", {"runlabel": {"opts": {"a": []}}}, "runlabel.opts[a]"),
    ],
)
def test_a_value_of_the_wrong_type_or_name_is_named_as_the_bad_parameter(method, parameters, path):
    from kiln.api.varlink_params import BadParameter, checked_call

    with pytest.raises(BadParameter) as bad:
        checked_call(interface(), {"method": f"io.podman.{method}", "parameters": parameters})
    assert bad.value.path == path


def test_addresses():
    from kiln.api.varlink_server import parse_varlink_address
    from kiln.errors import InvalidArgument

    assert parse_varlink_address("unix:/run/x.sock") == "/run/x.sock"
    assert parse_varlink_address("unix:///run/x.sock") == "/run/x.sock"
    assert parse_varlink_address("unix:/run/x.sock;mode=0600") == "/run/x.sock"
    for bad in ("tcp:127.0.0.1:1", "unix:rel.sock", "unix:@abstract", "/run/x.sock"):
        with pytest.raises(InvalidArgument):
            parse_varlink_address(bad)


def test_kiln_and_its_help_do_not_import_varlink():
    code = (
        "import sys, kiln, kiln.cli.main as m\n"
        "try:\n    m.main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED' if 'varlink' in sys.modules else 'LAZY')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "--varlink" in out.stdout and out.stdout.strip().endswith("LAZY"), out.stderr
