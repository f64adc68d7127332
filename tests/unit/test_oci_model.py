import hashlib

import pytest

from kiln.errors import InvalidArgument, NotFound
from kiln.oci import Descriptor, Digest, ImageConfig, Index, Manifest, Platform
from kiln.oci import media_types as mt
from kiln.oci.strict_json import loads
from kiln.registry.pull_request import PullRequest

HEX = "b" * 64


def test_digest_parse_and_hash():
    d = Digest.of_bytes(b"hi")
    assert str(d) == "sha256:" + hashlib.sha256(b"hi").hexdigest()
    assert Digest.parse(str(d)) == d
    assert Digest.parse("sha512:" + "c" * 128).algorithm == "sha512"
    for bad in ("sha256:xyz", "sha256:" + "A" * 64, "nope", "sha256:" + "a" * 63):
        with pytest.raises(InvalidArgument):
            Digest.parse(bad)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/6", "linux/arm/v6"),
        ("arm64", "linux/arm64"),
    ],
)
def test_platform_normalisation(spec, expected):
    assert str(Platform.parse(spec)) == expected


def test_an_os_alone_is_the_hosts_architecture_on_that_os():
    # podman's ``--platform linux`` (containerd's parser): the host's arch and variant
    host = Platform.host()
    assert Platform.parse("linux") == host
    assert Platform.parse("Linux") == host
    assert Platform.parse("windows") == Platform("windows", host.architecture, host.variant)
    assert PullRequest.of("x", platform="linux").platform == host  # pull/push/build take it
    assert str(Platform.parse("amd64")) == "linux/amd64"  # an arch alone is still linux's


def test_platform_matching_and_errors():
    assert Platform.parse("linux/arm64").matches(Platform.parse("linux/arm64/v8"))
    assert not Platform.parse("linux/arm/v7").matches(Platform.parse("linux/arm/v6"))
    assert not Platform.parse("linux/amd64").matches(Platform.parse("linux/arm64"))
    with pytest.raises(InvalidArgument, match="invalid platform"):
        Platform.parse("linux//x")


@pytest.mark.parametrize("spec", ["linux/../x", "linux/a\x00b", "linux/amd64/v 2", "lin.ux/amd64"])
def test_a_platform_part_is_letters_digits_underscores_and_dashes(spec):
    """As containerd parses a platform: '..' was an architecture (no emulator for '..'),
    a NUL one reached the emulator's file lookup (ValueError: embedded null byte)."""
    with pytest.raises(InvalidArgument, match="invalid platform"):
        Platform.parse(spec)


def test_a_foreign_run_of_a_platform_that_is_none_fails_as_one():
    """The build's early emulator check refuses it as the invalid platform it is."""
    from kiln.build.emulators import check_emulators
    from kiln.build.parser import parse_string

    parsed = parse_string("FROM busybox\nRUN true\n", name="Containerfile")
    for spec in ("linux/a\x00b", "linux/../x"):
        with pytest.raises(InvalidArgument, match="invalid platform"):
            check_emulators(parsed, {}, None, [spec])


def _desc(data: bytes, media_type: str) -> Descriptor:
    return Descriptor(media_type, Digest.of_bytes(data), len(data))


def test_manifest_keeps_exact_bytes():
    raw = (
        b'{ "schemaVersion": 2, "mediaType": "%s",\n "config": {"mediaType": "%s", "digest": "sha256:%s", "size": 3},'
        b' "layers": [] }' % (mt.OCI_MANIFEST.encode(), mt.OCI_CONFIG.encode(), HEX.encode())
    )
    m = Manifest.parse(raw)
    assert m.raw == raw
    assert m.digest == Digest.of_bytes(raw)
    assert m.config.size == 3


def test_manifest_build_is_canonical_golden():
    config = Descriptor(mt.OCI_CONFIG, Digest("sha256", HEX), 7)
    layer = Descriptor(mt.OCI_LAYER_GZIP, Digest("sha256", "c" * 64), 9)
    m = Manifest.build(mt.OCI_MANIFEST, config, [layer])
    assert m.raw == (
        b'{"config":{"digest":"sha256:'
        + HEX.encode()
        + b'","mediaType":"application/vnd.oci.image.config.v1+json",'
        b'"size":7},"layers":[{"digest":"sha256:' + b"c" * 64 + b'","mediaType":'
        b'"application/vnd.oci.image.layer.v1.tar+gzip","size":9}],"mediaType":'
        b'"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}'
    )
    assert Manifest.parse(m.raw) == m


def test_manifest_refuses_mismatched_declared_type_and_bad_json():
    raw = b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % mt.OCI_INDEX.encode()
    with pytest.raises(InvalidArgument, match="served as"):
        Manifest.parse(raw, mt.OCI_MANIFEST)
    with pytest.raises(InvalidArgument, match="duplicate key"):
        loads(b'{"a":1,"a":2}')
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        loads(b'{"a":NaN}')
    with pytest.raises(InvalidArgument, match="limit"):
        loads(b" " * 100, limit=10)


def test_index_selects_platform():
    amd = _desc(b"a", mt.OCI_MANIFEST).replace(platform=Platform.parse("linux/amd64"))
    arm = _desc(b"b", mt.OCI_MANIFEST).replace(platform=Platform.parse("linux/arm64/v8"))
    idx = Index.build(mt.OCI_INDEX, [amd, arm])
    assert Index.parse(idx.raw).select(Platform.parse("linux/arm64")) == arm
    with pytest.raises(NotFound, match="linux/amd64, linux/arm64"):
        idx.select(Platform.parse("linux/s390x"))


def test_an_oci_index_entry_without_a_platform_is_taken_when_none_matches():
    """As containers/image chooses (podman and buildah pull it); a Docker list's entries
    must name their platform."""
    amd = _desc(b"a", mt.OCI_MANIFEST).replace(platform=Platform.parse("linux/amd64"))
    bare = _desc(b"b", mt.OCI_MANIFEST)
    idx = Index.parse(Index.build(mt.OCI_INDEX, [bare, amd]).raw)
    assert idx.select(Platform.parse("linux/amd64")) == amd  # a match comes first
    assert idx.select(Platform.parse("linux/s390x")) == bare
    docker = Index.parse(Index.build(mt.DOCKER_MANIFEST_LIST, [bare, amd]).raw)
    with pytest.raises(NotFound, match="linux/amd64"):
        docker.select(Platform.parse("linux/s390x"))


def test_config_round_trip_keeps_unknown_fields_and_bytes():
    raw = (
        b'{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],'
        b'"Healthcheck":{"Test":["CMD","true"],"Interval":1000},"OnBuild":["RUN x"],"Shell":["/bin/ash","-c"],'
        b'"ArgsEscaped":true,"StopSignal":"SIGTERM","Custom":1},"rootfs":{"type":"layers","diff_ids":[]},'
        b'"history":[{"created_by":"x","empty_layer":true}],"container":"abc"}'
    )
    cfg = ImageConfig.parse(raw)
    assert cfg.to_bytes() == raw
    assert cfg.config.healthcheck.test == ("CMD", "true")
    assert cfg.config.shell == ("/bin/ash", "-c") and cfg.config.on_build == ("RUN x",)
    changed = cfg.evolve(config=cfg.config.with_env("A", "1"))
    again = ImageConfig.parse(changed.to_bytes())
    assert again.config.env_dict() == {"PATH": "/bin", "A": "1"}
    assert again.config.extra == {"Custom": 1} and again.extra == {"container": "abc"}
    assert again.history[0].empty_layer


def test_manifests_and_indexes_are_parsed_once(monkeypatch):
    """The media type is sniffed from the document parse() reads, not from a second parse."""
    import kiln.oci.manifest as manifest_module

    calls = []
    real = manifest_module.loads_object

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(manifest_module, "loads_object", counting)
    cfg = Descriptor(mt.OCI_CONFIG, Digest.of_bytes(b"{}"), 2)
    m = Manifest.build(mt.OCI_MANIFEST, cfg, [])
    assert Manifest.parse(m.raw).media_type == mt.OCI_MANIFEST
    assert len(calls) == 1
    idx = Index.build(mt.OCI_INDEX, [m.descriptor(Platform.parse("linux/amd64"))])
    assert Index.parse(idx.raw, mt.OCI_INDEX).manifests[0].digest == m.digest
    assert len(calls) == 2
