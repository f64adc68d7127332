"""What a credentials test writes: ``auths`` entries, auth files, and
``docker-credential-<name>`` helper scripts on ``$PATH``."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest


def basic_auth(user: str, password: str) -> dict:
    """An ``auths`` entry as podman and Docker store a login: ``base64(user:password)``."""
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def write_json(path: str | os.PathLike, obj: object) -> str:
    """``obj`` as JSON at ``path``, its directories made; ``path`` as a string."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)


def install_credential_helper(
    bindir: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """``docker-credential-<name>`` in ``bindir`` (made if missing) running ``body`` with
    sh, found first on ``$PATH``; the script's path."""
    bindir.mkdir(exist_ok=True)
    script = bindir / f"docker-credential-{name}"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return script
