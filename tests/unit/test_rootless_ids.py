"""Who a rootless kiln is, where its state goes, and the id maps it asks newuidmap for."""

from __future__ import annotations

import os

import pytest

from kiln.errors import Unavailable
from kiln.runtime import userns
from kiln.store.paths import default_root
from kiln.util import rootless


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("KILN_ROOT", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", rootless.ROOTLESS_UID_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_inside_kiln_userns_the_store_is_the_users_not_var_lib(clean_env, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("simulates uid 0 of kiln's namespace")
    clean_env.setenv("HOME", str(tmp_path))
    assert default_root() == "/var/lib/kiln"
    clean_env.setenv(rootless.ROOTLESS_UID_ENV, "1001")
    assert rootless.rootless_uid() == 1001 and rootless.in_kiln_userns()
    assert default_root() == str(tmp_path / ".local" / "share" / "kiln")
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_root() == str(tmp_path / "data" / "kiln")
    clean_env.setenv("KILN_ROOT", str(tmp_path / "explicit"))
    assert default_root() == str(tmp_path / "explicit")


def test_runtime_base_for_a_user(clean_env, tmp_path):
    clean_env.setenv(rootless.ROOTLESS_UID_ENV, "1001")
    assert rootless.runtime_base().endswith("/kiln-run-1001")
    clean_env.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert rootless.runtime_base() == str(tmp_path)
    clean_env.setenv("XDG_RUNTIME_DIR", "relative/dir")  # ignored, as podman does
    assert rootless.runtime_base().endswith("/kiln-run-1001")


def test_subordinate_ranges_by_name_or_uid(tmp_path):
    path = tmp_path / "subuid"
    path.write_text(
        "alice:100000:65536\nbob:165536:65536\n1001:300000:1000\n# comment\nalice:bad:1\n"
        "alice:400000:0\nalice:500000:10\n"
    )
    assert userns.subordinate_ranges(str(path), "alice", 1001) == [
        (100000, 65536), (300000, 1000), (500000, 10),
    ]  # fmt: skip
    assert userns.subordinate_ranges(str(path), "carol", 1002) == []
    assert userns.subordinate_ranges(str(tmp_path / "missing"), "alice", 1001) == []


def test_id_map_puts_the_user_at_zero_and_ranges_after_it():
    assert userns.id_map(1001, [(100000, 65536)]) == [0, 1001, 1, 1, 100000, 65536]
    assert userns.id_map(1001, [(100000, 10), (200000, 5)]) == [
        0, 1001, 1, 1, 100000, 10, 11, 200000, 5,
    ]  # fmt: skip


def test_missing_ranges_say_how_to_add_them(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setattr(userns, "SUBUID_FILE", str(empty))
    monkeypatch.setattr(userns, "SUBGID_FILE", str(empty))
    with pytest.raises(Unavailable, match="usermod --add-subuids .* --add-subgids"):
        userns._mappings()


def test_enter_is_nothing_for_root():
    if os.geteuid() != 0:
        pytest.skip("root only")
    userns.enter()  # returns: root's kiln stays where it is
