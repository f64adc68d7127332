"""WWW-Authenticate parsing as registries send it."""

from __future__ import annotations

from kiln.registry.auth_challenge import parse_challenges, parse_headers, preferred


def test_bearer_with_realm_service_scope() -> None:
    (ch,) = parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"'
    )
    assert ch.scheme == "bearer"
    assert ch.realm == "https://auth.docker.io/token"
    assert ch.service == "registry.docker.io"
    assert ch.scope == "repository:library/busybox:pull"


def test_quoted_values_keep_commas_spaces_and_escapes() -> None:
    (ch,) = parse_challenges(
        'Bearer realm="http://a/t",scope="repository:x:pull,push repository:y:pull",'
        'error="insufficient_scope",note="say \\"hi\\""'
    )
    assert ch.scope == "repository:x:pull,push repository:y:pull"
    assert ch.params["error"] == "insufficient_scope"
    assert ch.params["note"] == 'say "hi"'


def test_basic_with_token_value_and_bare_scheme() -> None:
    assert parse_challenges("Basic realm=registry")[0].params == {"realm": "registry"}
    assert parse_challenges("Basic")[0].scheme == "basic"


def test_several_challenges_in_one_header_and_preference() -> None:
    chs = parse_challenges('Basic realm="a, b", Bearer realm="https://t", service="s"')
    assert [c.scheme for c in chs] == ["basic", "bearer"]
    assert chs[0].realm == "a, b"
    assert chs[1].service == "s"
    assert preferred(chs).scheme == "bearer"


def test_scheme_and_keys_are_case_insensitive() -> None:
    (ch,) = parse_challenges('BEARER Realm="x",SERVICE="y"')
    assert (ch.scheme, ch.realm, ch.service) == ("bearer", "x", "y")


def test_several_headers_and_junk() -> None:
    chs = parse_headers(["Negotiate", 'Basic realm="r"', ""])
    assert [c.scheme for c in chs] == ["negotiate", "basic"]
    assert preferred(chs).scheme == "basic"
    assert preferred(parse_headers(["Negotiate"])) is None
