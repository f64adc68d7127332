"""Build parameters through ``kiln serve`` are honoured or refused, never dropped:
``--ulimit`` (Docker's objects, podman's strings), ``--dns*``, ``--cap-drop`` reach the RUN
steps; ``--cap-add``, ``--secret`` and an output directory answer 400 naming the parameter."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PODMAN = shutil.which("podman")
CALL_TIMEOUT = 90

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

DOCKERFILE = """FROM base:1
RUN echo "nofile=$(ulimit -n)" && cat /etc/resolv.conf && grep CapBnd /proc/self/status
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build-params")
    proc, sock = start_server(tmp)
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "dc"))
    env.pop("DOCKER_BUILDKIT", None)
    (tmp / "dc").mkdir()
    (tmp / "rootfs.tar").write_bytes(busybox_sh_tar())
    run(env, [DOCKER, "import", str(tmp / "rootfs.tar"), "base:1"])
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "s.txt").write_text("secret\n")
    try:
        yield env, sock, ctx
    finally:
        assert stop_server(proc) == 0


def run(env: dict, argv: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip
    if ok:
        assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])
    return r


def test_docker_build_ulimit_reaches_run(env):
    env_, _sock, ctx = env
    out = run(env_, [DOCKER, "build", "--no-cache", "--ulimit", "nofile=512:512", str(ctx)])
    assert "nofile=512" in out.stdout, out.stdout


@pytest.mark.skipif(PODMAN is None, reason="podman not installed")
def test_podman_remote_build_ulimit_dns_and_cap_drop(env):
    env_, sock, ctx = env
    podman = [PODMAN or "podman", "--remote", "--url", f"unix://{sock}"]
    out = run(env_, [*podman, "build", "--no-cache", "--ulimit", "nofile=256:256",
                     "--dns", "10.9.8.7", "--dns-search", "kiln.test", "--dns-option", "ndots:3",
                     "--cap-drop", "ALL", str(ctx)])  # fmt: skip
    text = out.stdout + out.stderr
    assert "nofile=256" in text, text
    assert "nameserver 10.9.8.7" in text and "kiln.test" in text and "ndots:3" in text, text
    assert "CapBnd:\t0000000000000000" in text, text


@pytest.mark.skipif(PODMAN is None, reason="podman not installed")
@pytest.mark.parametrize(
    "flags, named",
    [
        (["--cap-add", "SYS_ADMIN"], "addcaps"),
        (["--secret", "id=s,src=SECRET"], "secrets"),
    ],
)
def test_podman_remote_build_refuses_what_it_will_not_honour(env, flags, named):
    env_, sock, ctx = env
    podman = [PODMAN or "podman", "--remote", "--url", f"unix://{sock}"]
    flags = [f.replace("SECRET", str(ctx / "s.txt")) for f in flags]
    r = run(env_, [*podman, "build", *flags, str(ctx)], ok=False)
    assert r.returncode != 0 and named in r.stderr, (r.stdout, r.stderr)


def test_an_output_directory_on_the_server_is_refused(env, tmp_path):
    """podman's client refuses --output remotely; a raw caller gets a 400 naming it."""
    env_, sock, ctx = env
    tar = tmp_path / "ctx.tar"
    run(env_, ["tar", "-C", str(ctx), "-cf", str(tar), "Dockerfile"])
    dest = tmp_path / "should-not-exist"
    r = run(env_, ["curl", "-sS", "--max-time", str(CALL_TIMEOUT), "--unix-socket", sock,
                   "-w", "%{http_code}", "-H", "Content-Type: application/x-tar",
                   "--data-binary", f"@{tar}",
                   f"http://d/v4.0.0/libpod/build?outputs=type=local,dest={dest}"])  # fmt: skip
    assert r.stdout.endswith("400") and "outputs" in r.stdout, r.stdout
    assert not dest.exists()
