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

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

DEBIAN_DOCKER = "/usr/bin/docker"
needs_debian_docker = pytest.mark.skipif(
    not os.path.exists(DEBIAN_DOCKER), reason="Debian's docker.io not installed"
)


@contextlib.contextmanager
def docker_cli(tmp_path: Path, client: str, **server: Any) -> Iterator[Any]:
    """``kiln serve`` of the test's own (``server``: ``start_server``'s keywords) and a
    ``docker(*args, env_extra=, input=, check=True)`` running ``client`` against it, with
    ``base:1`` imported through it; ``docker.sock``/``.env``/``.tmp`` as named. The socket
    is gone once the server has stopped."""
    proc, sock = start_server(tmp_path, sock=str(tmp_path / "run" / "kiln.sock"), **server)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp_path / "dcfg"))
    env.pop("DOCKER_BUILDKIT", None)

    def docker(*args: str, env_extra: dict[str, str] | None = None, input: bytes | None = None,
               check: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
        r = subprocess.run([client, *args], env={**env, **(env_extra or {})}, input=input,
                           stdin=subprocess.DEVNULL if input is None else None,
                           capture_output=True, timeout=120)  # fmt: skip
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.stderr.decode()}")
        return r

    docker.tmp = tmp_path  # type: ignore[attr-defined]
    docker.sock = sock  # type: ignore[attr-defined]
    docker.env = env  # type: ignore[attr-defined]
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_sh_tar())
    docker("import", str(rootfs), "base:1")
    yield docker
    assert stop_server(proc) == 0
    assert not os.path.exists(sock), "the socket is removed on shutdown"


@pytest.fixture
def kiln(tmp_path):
    with docker_cli(tmp_path, DEBIAN_DOCKER) as docker:
        yield docker


def context(tmp_path: Path, dockerfile: str) -> Path:
    """``tmp_path/ctx`` holding ``dockerfile`` as its Dockerfile."""
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx
