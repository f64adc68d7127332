"""registries.conf v2: search registries, short-name modes, aliases, mirrors, drop-ins."""

from __future__ import annotations

import pytest

from kiln.errors import InvalidArgument
from kiln.oci import Reference
from kiln.registry import registries_conf

CONF = """
unqualified-search-registries = ["quay.io", "docker.io"]
short-name-mode = "enforcing"

[aliases]
"myapp" = "registry.example.com/team/myapp"

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "mirror.local:5000"
insecure = true
[[registry.mirror]]
location = "mirror2.local"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com/bar"
insecure = true

[[registry]]
location = "evil.example"
blocked = true

[[registry]]
prefix = "*.wild.example"
insecure = true
"""


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "registries.conf"
    path.write_text(CONF)
    return registries_conf.load(str(path))


def test_enforcing_refuses_ambiguous_short_names_listing_candidates(conf) -> None:
    with pytest.raises(InvalidArgument) as exc:
        conf.resolve_short_name("busybox")
    msg = str(exc.value)
    assert "quay.io/busybox:latest" in msg
    assert "docker.io/library/busybox:latest" in msg
    assert "ambiguous" in msg and "fully qualified" in msg


def test_permissive_lists_candidates_in_order(conf) -> None:
    conf.short_name_mode = "permissive"
    got = [str(r) for r in conf.resolve_short_name("busybox:1.36")]
    assert got == ["quay.io/busybox:1.36", "docker.io/library/busybox:1.36"]


def test_aliases_and_qualified_names(conf) -> None:
    assert [str(r) for r in conf.resolve_short_name("myapp:v2")] == [
        "registry.example.com/team/myapp:v2"
    ]
    assert [str(r) for r in conf.resolve_short_name("ghcr.io/a/b")] == ["ghcr.io/a/b:latest"]


def test_single_search_registry_is_not_ambiguous(tmp_path) -> None:
    path = tmp_path / "r.conf"
    path.write_text('unqualified-search-registries = ["docker.io"]\n')
    assert [str(r) for r in registries_conf.load(str(path)).resolve_short_name("alpine")] == [
        "docker.io/library/alpine:latest"
    ]


def test_no_search_registries_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "r.conf"
    path.write_text("unqualified-search-registries = []\n")
    with pytest.raises(InvalidArgument, match="no unqualified-search registries"):
        registries_conf.load(str(path)).resolve_short_name("alpine")


def test_mirrors_come_first_and_rewrite(conf) -> None:
    sources = conf.pull_sources(Reference.parse("docker.io/library/busybox:1"))
    assert [(str(s.ref), s.insecure, s.mirror) for s in sources] == [
        ("mirror.local:5000/library/busybox:1", True, True),
        ("mirror2.local/library/busybox:1", False, True),
        ("docker.io/library/busybox:1", False, False),
    ]
    (src,) = conf.pull_sources(Reference.parse("example.com/foo/app:x"))
    assert str(src.ref) == "internal.example.com/bar/app:x" and src.insecure
    assert conf.is_insecure("mirror.local:5000")
    assert conf.is_insecure("a.wild.example")
    assert not conf.is_insecure("quay.io")


def test_blocked_registry_is_refused(conf) -> None:
    with pytest.raises(InvalidArgument, match="registry evil.example is blocked"):
        conf.pull_sources(Reference.parse("evil.example/x:y"))
    with pytest.raises(InvalidArgument, match="blocked"):
        conf.push_target(Reference.parse("evil.example/x:y"))


def test_dropins_override(tmp_path) -> None:
    main = tmp_path / "registries.conf"
    main.write_text(CONF)
    dropins = tmp_path / "registries.conf.d"
    dropins.mkdir()
    (dropins / "10-a.conf").write_text(
        'unqualified-search-registries = ["r.local"]\n'
        '[[registry]]\nlocation = "evil.example"\nblocked = false\n'
    )
    (dropins / "20-b.conf").write_text('short-name-mode = "disabled"\n')
    conf = registries_conf.load(str(main))
    assert conf.search == ["r.local"]
    assert conf.short_name_mode == "disabled"
    conf.pull_sources(Reference.parse("evil.example/x"))  # no longer blocked
    assert len(conf.files) == 3


def test_env_path_and_errors(tmp_path, monkeypatch) -> None:
    path = tmp_path / "env.conf"
    path.write_text('unqualified-search-registries = ["e.local"]\n')
    monkeypatch.setenv("KILN_REGISTRIES_CONF", str(path))
    assert registries_conf.load().search == ["e.local"]
    monkeypatch.setenv("KILN_REGISTRIES_CONF", str(tmp_path / "missing.conf"))
    with pytest.raises(InvalidArgument, match="does not exist"):
        registries_conf.load()
    bad = tmp_path / "bad.conf"
    bad.write_text("short-name-mode = 'sometimes'\n")
    with pytest.raises(InvalidArgument, match="short-name-mode"):
        registries_conf.load(str(bad))
    bad.write_text("[[registry]\n")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        registries_conf.load(str(bad))
