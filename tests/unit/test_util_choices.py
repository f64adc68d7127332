"""kiln.util.choices: one vocabulary (pull policy, format, compression, network, isolation)
for every command and route."""

from __future__ import annotations

import pytest

from kiln.errors import InvalidArgument
from kiln.util.choices import (
    PULL_POLICIES,
    Compression,
    ImageFormat,
    Isolation,
    NetworkMode,
    PullPolicy,
)


@pytest.mark.parametrize(
    ("text", "policy"),
    [("always", "always"), ("TRUE", "always"), ("missing", "missing"), ("false", "missing"),
     ("IfMissing", "missing"), ("never", "never"), ("newer", "newer"), ("ifnewer", "newer"),
     (" never ", "never")],
)  # fmt: skip
def test_podman_spellings(text, policy):
    assert PullPolicy.parse(text) == policy


def test_anything_else_is_refused_with_the_choices():
    with pytest.raises(InvalidArgument, match='invalid pull policy "sometimes": use one of always'):
        PullPolicy.parse("sometimes")


def test_the_choices_commands_offer():
    assert PULL_POLICIES == ("always", "missing", "never", "newer")


@pytest.mark.parametrize(
    ("enum", "text", "word"),
    [(ImageFormat, "OCI", "oci"), (ImageFormat, "v2s2", "docker"),
     (ImageFormat, "application/vnd.docker.distribution.manifest.v2+json", "docker"),
     (Compression, "uncompressed", "none"), (Compression, "ZSTD", "zstd"),
     (NetworkMode, "bridge", "private"), (NetworkMode, "default", "host"),
     (NetworkMode, "none", "none"), (Isolation, "rootless", "oci"),
     (Isolation, "chroot", "chroot")],
)  # fmt: skip
def test_each_vocabulary_takes_the_other_tools_spellings(enum, text, word):
    value = enum.parse(text)
    assert value == word and isinstance(value, enum)


@pytest.mark.parametrize(
    ("enum", "text", "message"),
    [(ImageFormat, "v2s1", "--format 'v2s1' is invalid: use one of oci, docker"),
     (Compression, "lz4", "--compression 'lz4' is invalid: use one of gzip, zstd, none"),
     (NetworkMode, "macvlan", "--network 'macvlan' is invalid: use one of host, none, private"),
     (Isolation, "vm", "--isolation 'vm' is invalid: use one of oci, chroot")],
)  # fmt: skip
def test_a_word_outside_a_vocabulary_is_refused_naming_the_flag_and_choices(enum, text, message):
    with pytest.raises(InvalidArgument) as err:
        enum.parse(text)
    assert str(err.value) == message


def test_the_refusal_names_the_flag_the_caller_gives():
    with pytest.raises(InvalidArgument, match=r"^\$BUILDAH_ISOLATION 'vm'"):
        Isolation.parse("vm", "$BUILDAH_ISOLATION")


@pytest.mark.parametrize(
    ("policy", "have_local", "asks"),
    [("always", True, True), ("always", False, True), ("missing", True, False),
     ("missing", False, True), ("never", True, False), ("never", False, False),
     ("newer", True, True), ("newer", False, True)],
)  # fmt: skip
def test_the_one_pull_decision(policy, have_local, asks):
    assert PullPolicy(policy).asks_registry(have_local=have_local) is asks


def test_a_platform_asked_for_turns_missing_into_always_only():
    assert PullPolicy.MISSING.for_platform(True) is PullPolicy.ALWAYS
    assert PullPolicy.MISSING.for_platform(False) is PullPolicy.MISSING
    assert PullPolicy.NEVER.for_platform(True) is PullPolicy.NEVER
