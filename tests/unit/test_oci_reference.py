import pytest

from kiln.errors import InvalidArgument
from kiln.oci.reference import (
    Reference,
    is_loopback_domain,
    is_short_name,
    looks_like_id,
    match_name,
)

HEX = "a" * 64

NORMALISED = [
    ("busybox", "docker.io/library/busybox:latest", "busybox"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox"),
    ("index.docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app"),
    ("localhost/app", "localhost/app:latest", "localhost/app"),
    ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag", "localhost:5000/a/b"),
    (
        f"localhost:5000/a/b:tag@sha256:{HEX}",
        f"localhost:5000/a/b:tag@sha256:{HEX}",
        "localhost:5000/a/b",
    ),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}", "busybox"),
    ("quay.io/org/sub/repo", "quay.io/org/sub/repo:latest", "quay.io/org/sub/repo"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x"),
    ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x"),
    ("a__b/c--d.e_f:T.1-x", "docker.io/a__b/c--d.e_f:T.1-x", "a__b/c--d.e_f"),
    ("Registry.Example.com/x", "Registry.Example.com/x:latest", "Registry.Example.com/x"),
]


@pytest.mark.parametrize("given,full,familiar", NORMALISED)
def test_normalises_like_docker(given, full, familiar):
    ref = Reference.parse(given)
    assert str(ref) == full
    assert ref.familiar_name == familiar


BAD = [
    ("", "at least one component"),
    ("Busybox", "must be lowercase"),
    ("a b", "whitespace"),
    ("x:", "bad tag"),
    ("-a", "bad repository name"),
    ("a/", "bad repository name"),
    ("a//b", "bad repository name"),
    ("a" * 256, "not be more than 255"),
    ("foo:" + "t" * 129, "bad tag"),
    ("foo@sha256:abc", "bad digest"),
    (f"foo@md5:{'a' * 32}", "unsupported digest algorithm"),
    ("foo:bar:baz", "bad"),
    ("a..b", "bad repository name"),
]


@pytest.mark.parametrize("given,message", BAD)
def test_refuses_bad_references_clearly(given, message):
    with pytest.raises(InvalidArgument, match="invalid reference format|unsupported digest") as exc:
        Reference.parse(given)
    assert message in str(exc.value)


def test_no_default_tag_when_asked():
    assert Reference.parse("busybox", default_tag=False).tag == ""


def test_short_names_and_ids():
    assert is_short_name("busybox") and is_short_name("library/busybox")
    assert not is_short_name("quay.io/x") and not is_short_name("localhost/x")
    assert looks_like_id(HEX) and looks_like_id("sha256:" + HEX) and not looks_like_id("abc")


def test_loopback_domains_are_the_ones_dockerd_treats_as_insecure():
    for domain in ("localhost", "localhost:5000", "127.0.0.1", "127.3.2.1:443", "[::1]:5000"):
        assert is_loopback_domain(domain), domain
    for domain in ("docker.io", "10.0.0.1:5000", "127.example.com.evil:5000x", "[::2]:5000"):
        assert not is_loopback_domain(domain), domain


def test_match_name_finds_the_stored_name_a_user_spelled():
    stored = ["docker.io/library/busybox:latest", "localhost/app:1", "quay.io/x/y:latest"]
    assert match_name("busybox", stored) == "docker.io/library/busybox:latest"
    assert match_name("app:1", stored) == "localhost/app:1"
    assert match_name("quay.io/x/y", stored) == "quay.io/x/y:latest"
    assert match_name("localhost/app:1", stored) == "localhost/app:1"
    assert match_name("app:2", stored) is None
    assert match_name("Not A Name", stored) is None
