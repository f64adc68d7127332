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
    from kiln.api.varlink_podman import make_service
    from kiln.api.varlink_service import fill_left_out
    from kiln.ops.config import Config

    service = make_service(Config(root="/nonexistent"))
    call = {"method": "io.podman.PushImage", "parameters": {"name": "x", "signBy": None}}
    assert fill_left_out(service, call)["parameters"] == {
        "name": "x", "tag": "", "compress": False, "format": "", "removeSignatures": False,
        "signBy": "",
    }  # fmt: skip
    search = fill_left_out(service, {"method": "io.podman.SearchImages"})["parameters"]
    assert search == {"query": "", "filter": {}}  # limit is ?int: left out
    other = {"method": "org.varlink.service.GetInfo"}
    assert fill_left_out(service, other) == other


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
