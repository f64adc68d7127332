"""--cache-to / --cache-from and the image outputs (-o type=image|registry), read as
BuildKit reads them; and the REST API's cachefrom/cacheto."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from kiln.api.routes_build import build_options
from kiln.build.cache_spec import parse_cache_from, parse_cache_to
from kiln.build.outputs import check_outputs, image_output, parse_output, writes_stdout
from kiln.errors import InvalidArgument


def test_cache_to_registry_with_options():
    spec = parse_cache_to(
        "type=registry,ref=reg.example/team/cache:main,mode=max,compression=zstd,ignore-error=true"
    )
    assert (spec.type, spec.ref, spec.mode) == ("registry", "reg.example/team/cache:main", "max")
    assert spec.compression == "zstd" and spec.ignore_error and not spec.insecure


def test_cache_defaults_and_bare_references():
    assert parse_cache_to("type=registry,ref=r/c").mode == "min"
    bare = parse_cache_from("reg.example/team/cache:main")
    assert (bare.type, bare.ref) == ("registry", "reg.example/team/cache:main")
    assert parse_cache_from("ref=r/c,registry.insecure=true").insecure
    local = parse_cache_from("type=local,src=/some/dir,tag=v1")
    assert (local.type, local.path, local.tag) == ("local", "/some/dir", "v1")
    assert parse_cache_to("type=local,dest=d").tag == "latest"
    assert parse_cache_to("type=inline").type == "inline"
    # BuildKit's CSV: a quoted field may hold a comma
    assert parse_cache_to('type=local,"dest=a,b"').path == "a,b"


def test_cache_to_compression_takes_buildkits_spelling_and_reads_canonical():
    # BuildKit spells "no compression" uncompressed; kiln's --compression says none
    assert parse_cache_to("type=inline,compression=uncompressed").compression == "none"
    assert parse_cache_to("type=inline,compression=none").compression == "none"
    assert parse_cache_to("type=inline,compression=ZSTD").compression == "zstd"
    assert parse_cache_to("type=inline").compression == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("type=gha", "type must be one of registry, local, inline"),
        ("type=registry", "needs ref="),
        ("type=local", "needs dest=DIR"),
        ("type=registry,ref=r/c,mode=all", "mode must be min or max"),
        ("type=registry,ref=r/c,colour=red", "unknown option(s) colour"),
        (
            "type=registry,ref=r/c,compression=brotli",
            "compression 'brotli' is invalid: use one of gzip, zstd, none",
        ),
        ("type=inline,mode=max", "supports only mode=min"),
        ("type=registry,ref=r/c,ignore-error=perhaps", "must be true or false"),
        ("type=registry,ref", "is not KEY=VALUE"),
        ("type=registry,ref=r/c,oci-mediatypes=yes-please", "must be true or false"),
        ("type=registry,ref=r/c,image-manifest=on", "must be true or false"),
        ("type=registry,ref=r/c,force-compression=sure", "must be true or false"),
        ("type=registry,ref=r/c,compression-level=fast", "compression-level='fast' must be a"),
        ("", "empty value"),
    ],
)
def test_bad_cache_to_is_refused_with_one_clear_message(value, message):
    with pytest.raises(InvalidArgument, match="--cache-to") as info:
        parse_cache_to(value)
    assert message in str(info.value)


def test_buildkit_inline_cache_build_arg_reads_as_go_reads_a_bool():
    from kiln.build.cache_spec import inline_cache_arg

    for word in ("1", "true", "True", "TRUE", "t"):
        spec = inline_cache_arg({"BUILDKIT_INLINE_CACHE": word})
        assert spec is not None and spec.type == "inline" and spec.mode == "min"
    for word in ("0", "false", "", "yes", "please"):
        assert inline_cache_arg({"BUILDKIT_INLINE_CACHE": word}) is None
    assert inline_cache_arg({}) is None
    accepted = parse_cache_to("type=registry,ref=r/c,oci-mediatypes=false,compression-level=3")
    assert accepted.level == "3"


def test_bad_cache_from_is_refused():
    with pytest.raises(InvalidArgument, match="use --cache-from IMAGE"):
        parse_cache_from("type=inline")
    with pytest.raises(InvalidArgument, match="needs src=DIR"):
        parse_cache_from("type=local")
    with pytest.raises(InvalidArgument, match="unknown option"):
        parse_cache_from("type=registry,ref=r/c,mode=max")


def test_image_outputs():
    reg = image_output("type=registry,name=reg.example/a:1")
    assert reg is not None and reg.names == ("reg.example/a:1",) and reg.push
    img = image_output('type=image,"name=r/a:1,r/b:2",push=true,registry.insecure=true')
    assert img is not None and img.names == ("r/a:1", "r/b:2") and img.push and img.insecure
    local = image_output("type=image,name=a")
    assert local is not None and not local.push
    assert image_output("type=local,dest=out") is None
    assert image_output("out") is None
    assert parse_output("type=registry,name=r/a") == ("registry", "r/a")
    check_outputs(["type=registry,name=r/a"])  # nothing to check on the file system
    assert not writes_stdout(["type=image,name=-"])
    with pytest.raises(InvalidArgument, match="name=REF is required"):
        image_output("type=registry")
    with pytest.raises(InvalidArgument, match="unknown option"):
        image_output("type=image,name=a,dest=b")


def test_api_cachefrom_and_libpod_cacheto():
    docker = build_options(QueryParams('cachefrom=["reg.example/c:1"]'), libpod=False)
    assert docker["cache_from"] == ["reg.example/c:1"]
    assert "cache_to" not in docker
    libpod = build_options(
        QueryParams([("cachefrom", '["r/c:1"]'), ("cacheto", '["type=registry,ref=r/c:2"]')]),
        libpod=True,
    )
    assert libpod["cache_from"] == ["r/c:1"]
    assert libpod["cache_to"] == ["type=registry,ref=r/c:2"]


def test_push_targets():
    from kiln.build.options import BuildOptions
    from kiln.ops.build_share import push_targets

    with pytest.raises(InvalidArgument, match="--push needs a name"):
        push_targets(BuildOptions(push=True))
    opts = BuildOptions(
        push=True,
        tags=["r/a:1"],
        outputs=["type=registry,name=r/b:2,registry.insecure=true", "type=image,name=r/c:3"],
    )
    assert push_targets(opts) == [("r/a:1", False), ("r/b:2", True)]
