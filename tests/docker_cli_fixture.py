"""The ``kiln`` fixture of the docker CLI tests: Debian's docker.io client (20.10, which still
speaks the classic builder and BuildKit's session itself) pointed at a ``kiln serve`` of the
test's own, with ``base:1`` (busybox) imported through it.

    pytest_plugins = ["docker_cli_fixture"]
    from docker_cli_fixture import context

    def test_x(kiln, tmp_path):
        r = kiln("build", "-q", str(context(tmp_path, "FROM base:1\\n")), check=False)

``kiln(*args, env_extra=..., input=..., check=True)`` runs ``docker ARGS`` (its
CompletedProcess; ``check``: an AssertionError with the stderr when it fails);
``kiln.sock`` is the server's socket, ``kiln.tmp`` the test's directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

DEBIAN_DOCKER = "/usr/bin/docker"
needs_debian_docker = pytest.mark.skipif(
    not os.path.exists(DEBIAN_DOCKER), reason="Debian's docker.io not installed"
)


@pytest.fixture
def kiln(tmp_path):
    proc, sock = start_server(tmp_path, sock=str(tmp_path / "run" / "kiln.sock"))
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "dcfg"))
    env.pop("DOCKER_BUILDKIT", None)

    def docker(*args: str, env_extra: dict[str, str] | None = None, input: bytes | None = None,
               check: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
        r = subprocess.run([DEBIAN_DOCKER, *args], env={**env, **(env_extra or {})}, input=input,
                           stdin=subprocess.DEVNULL if input is None else None,
                           capture_output=True, timeout=120)  # fmt: skip
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.stderr.decode()}")
        return r

    docker.tmp = tmp_path  # type: ignore[attr-defined]
    docker.sock = sock  # type: ignore[attr-defined]
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_sh_tar())
    docker("import", str(rootfs), "base:1")
    yield docker
    assert stop_server(proc) == 0


def context(tmp_path: Path, dockerfile: str) -> Path:
    """``tmp_path/ctx`` holding ``dockerfile`` as its Dockerfile."""
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx
