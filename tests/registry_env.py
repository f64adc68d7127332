"""A registry test's own environment: nothing from the host's registries.conf, auth
files or Docker config leaks in, and nothing the test stores leaks out.

    @pytest.fixture(autouse=True)
    def _isolated(tmp_path, monkeypatch):
        isolate_registry_env(tmp_path, monkeypatch, home=tmp_path)
"""

from __future__ import annotations

from pathlib import Path

import pytest


def isolate_registry_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, home: Path | None = None
) -> None:
    """A ``registries.conf`` searching docker.io only, ``$XDG_RUNTIME_DIR`` (where the
    auth file goes) under ``tmp_path``, ``$HOME`` set to ``home`` when given, and no
    ``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG`` or ``$XDG_CONFIG_HOME``."""
    conf = tmp_path / "registries.conf"
    conf.write_text('unqualified-search-registries = ["docker.io"]\n')
    monkeypatch.setenv("KILN_REGISTRIES_CONF", str(conf))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    if home is not None:
        monkeypatch.setenv("HOME", str(home))
    for var in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
