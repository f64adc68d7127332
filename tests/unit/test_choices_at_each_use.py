"""Every place that takes an image format or a layer compression accepts the same words
(``kiln.util.choices``: any case, podman's ``v2s2``, BuildKit's ``uncompressed``), reads
back the canonical word, and refuses anything else with the one wording."""

from __future__ import annotations

import pytest

from kiln.container.commit import CommitOptions
from kiln.errors import InvalidArgument
from kiln.image.mutate import check_format
from kiln.oci import media_types as mt
from kiln.ops import system
from kiln.ops.manifest_transfer import list_media_type
from kiln.ops.registry import push_compression, push_format


def test_commit_options_take_every_spelling_and_keep_the_canonical_word():
    opts = CommitOptions(image_format="V2S2", compression="uncompressed")
    assert (opts.image_format, opts.compression) == ("docker", "none")
    assert CommitOptions(image_format="OCI", compression="ZSTD").compression == "zstd"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"image_format": "v1"}, "--format 'v1' is invalid: use one of oci, docker"),
        ({"compression": "lz4"}, "--compression 'lz4' is invalid: use one of gzip, zstd, none"),
    ],
)
def test_commit_options_refuse_with_the_one_wording(kw, message):
    with pytest.raises(InvalidArgument) as info:
        CommitOptions(**kw)
    assert str(info.value) == message


def test_docker_format_with_zstd_is_still_refused_whatever_the_spelling():
    with pytest.raises(InvalidArgument, match="zstd layers need --format oci"):
        CommitOptions(image_format="v2s2", compression="ZSTD")


def test_image_writes_check_the_format_with_the_one_wording():
    assert check_format("V2S2") == "docker"
    with pytest.raises(
        InvalidArgument, match=r"^--format 'v1' is invalid: use one of oci, docker$"
    ):
        check_format("v1")


def test_push_takes_the_format_words_and_schema_1():
    assert push_format(None) is None
    assert push_format("V2S2") == "docker" and push_format("oci") == "oci"
    assert push_format("V2S1") == "v2s1"
    with pytest.raises(InvalidArgument, match="use oci, v2s2 or v2s1"):
        push_format("v1")


def test_push_compression_is_a_compression_word_but_never_none():
    assert push_compression("ZSTD") == "zstd"
    with pytest.raises(InvalidArgument, match="'lz4' is invalid: use one of gzip, zstd, none"):
        push_compression("lz4")
    for word in ("none", "uncompressed"):
        with pytest.raises(InvalidArgument, match="registries get compressed layers"):
            push_compression(word)


def test_manifest_lists_take_the_format_words():
    assert list_media_type("V2S2") == mt.DOCKER_MANIFEST_LIST
    assert list_media_type("docker") == mt.DOCKER_MANIFEST_LIST
    assert list_media_type("OCI") == mt.OCI_INDEX
    with pytest.raises(InvalidArgument, match="--format 'v1' is invalid: use one of oci, docker"):
        list_media_type("v1")


@pytest.mark.parametrize(("env", "shown"), [("", "oci"), ("rootless", "oci"), ("CHROOT", "chroot")])
def test_info_shows_the_isolation_a_run_would_use(monkeypatch, env, shown):
    monkeypatch.setenv("BUILDAH_ISOLATION", env)
    assert system._host()["isolation"] == shown


def test_info_refuses_a_bad_buildah_isolation_naming_the_variable(monkeypatch):
    monkeypatch.setenv("BUILDAH_ISOLATION", "vm")
    with pytest.raises(InvalidArgument, match=r"^\$BUILDAH_ISOLATION 'vm' is invalid"):
        system._host()
