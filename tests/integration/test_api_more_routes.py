"""Routes users hit that kiln serve used to answer 404: ``/events``, ``/build/prune``,
``/distribution/{name}/json``, ``/libpod/info``, podman's image diff through the container
changes path, ``/libpod/commit``, ``/libpod/images/{name}/resolve``; and container routes
answer 501 saying kiln runs no containers (``docker run`` no longer says the image is
missing). Each through the real client that calls it, every call with a timeout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from api_server import busybox_sh_tar, start_server, stop_server

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PODMAN = shutil.which("podman")
CALL_TIMEOUT = 60

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def env(tmp_path_factory, registry_plain):  # noqa: F811
    tmp = tmp_path_factory.mktemp("more-routes")
    conf = tmp / "registries.conf"
    conf.write_text(
        'unqualified-search-registries = ["docker.io", "quay.io"]\n'
        f'[[registry]]\nlocation = "{registry_plain.host}"\ninsecure = true\n'
    )
    server_env = dict(os.environ, KILN_REGISTRIES_CONF=str(conf))
    proc, sock = start_server(tmp, env=server_env)
    env = dict(server_env, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(tmp / "dc"))
    env.pop("DOCKER_BUILDKIT", None)
    (tmp / "dc").mkdir()
    (tmp / "rootfs.tar").write_bytes(busybox_sh_tar())
    run(env, [DOCKER, "import", str(tmp / "rootfs.tar"), "base:1"])
    try:
        yield {"tmp": tmp, "sock": sock, "env": env, "reg": registry_plain}
    finally:
        assert stop_server(proc) == 0


def run(env: dict, argv: list[str], ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=CALL_TIMEOUT)  # fmt: skip
    if ok:
        assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])
    return r


def curl(env: dict, sock: str, method: str, path: str) -> tuple[int, str]:
    r = run(env, ["curl", "-sS", "--max-time", str(CALL_TIMEOUT), "--unix-socket", sock,
                  "-X", method, "-w", "\n%{http_code}", f"http://d{path}"])  # fmt: skip
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def podman(e: dict, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    return run(e["env"], [PODMAN or "podman", "--remote", "--url", f"unix://{e['sock']}", *args],
               ok=ok)  # fmt: skip


def test_docker_events_report_image_operations(env):
    e, reg = env["env"], env["reg"]
    since = f"{time.time() - 1:.3f}"
    repo = f"{reg.host}/more-routes/ev:1"
    run(e, [DOCKER, "tag", "base:1", repo])
    run(e, [DOCKER, "push", repo])
    run(e, [DOCKER, "rmi", repo])
    run(e, [DOCKER, "pull", repo])
    ctx = env["tmp"] / "ctx-ev"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base:1\nLABEL ev=1\n")
    run(e, [DOCKER, "build", "-t", "evbuilt:1", str(ctx)])
    run(e, [DOCKER, "save", "-o", str(env["tmp"] / "ev.tar"), "evbuilt:1"])
    run(e, [DOCKER, "load", "-i", str(env["tmp"] / "ev.tar")])
    until = f"{time.time() + 1:.3f}"
    out = run(e, [DOCKER, "events", "--since", since, "--until", until, "--format",
                  "{{json .}}"]).stdout  # fmt: skip
    events = [json.loads(line) for line in out.splitlines()]
    actions = [ev["Action"] for ev in events]
    for action in ("tag", "push", "untag", "pull", "save", "load"):
        assert action in actions, actions
    assert all(ev["Type"] == "image" for ev in events)
    # the build's tagging is a tag event, as dockerd reports it (it has no build action)
    assert "build" not in actions
    assert any(ev["Action"] == "tag" and ev["Actor"]["Attributes"]["name"] == "evbuilt:1"
               for ev in events), events  # fmt: skip
    out = run(e, [DOCKER, "events", "--since", since, "--until", until, "--filter",
                  "event=push", "--format", "{{.Action}}"]).stdout.split()  # fmt: skip
    assert out == ["push"]


def test_dockerpy_events_stream_live(env):
    docker_py = pytest.importorskip("docker")
    c = docker_py.DockerClient(base_url=f"unix://{env['sock']}", version="auto",
                               timeout=CALL_TIMEOUT)  # fmt: skip
    try:
        start = time.time()
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
        proc.wait(CALL_TIMEOUT)
        c.images.get("base:1").tag("live-event", "1")
        got = list(c.events(since=start, until=time.time() + 2, decode=True))
        assert any(ev["Action"] == "tag" and "live-event" in json.dumps(ev) for ev in got), got
    finally:
        c.close()


def test_dockerpy_df_has_layers_size(env):
    docker_py = pytest.importorskip("docker")
    c = docker_py.DockerClient(base_url=f"unix://{env['sock']}", version="auto",
                               timeout=CALL_TIMEOUT)  # fmt: skip
    try:
        assert c.df()["LayersSize"] > 0
    finally:
        c.close()


def test_builder_prune(env):
    out = run(env["env"], [DOCKER, "builder", "prune", "-f"]).stdout
    assert "Total reclaimed space" in out, out


def test_distribution_inspect_through_dockerpy(env):
    docker_py = pytest.importorskip("docker")
    e, reg = env["env"], env["reg"]
    repo = f"{reg.host}/more-routes/dist:1"
    run(e, [DOCKER, "tag", "base:1", repo])
    run(e, [DOCKER, "push", repo])
    c = docker_py.DockerClient(base_url=f"unix://{env['sock']}", version="auto",
                               timeout=CALL_TIMEOUT)  # fmt: skip
    try:
        data = c.images.get_registry_data(repo)
        assert data.id.startswith("sha256:")
        assert data.has_platform("linux/amd64") or data.attrs["Platforms"], data.attrs
    finally:
        c.close()


@pytest.mark.skipif(PODMAN is None, reason="podman not installed")
def test_podman_remote_info_and_image_diff(env):
    info = json.loads(podman(env, "info", "--format", "json").stdout)
    assert info["host"]["os"] == "linux"
    ctx = env["tmp"] / "ctx-diff"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base:1\nRUN echo hi > /hello\n")
    run(env["env"], [DOCKER, "build", "-t", "withfile:1", str(ctx)])
    out = podman(env, "image", "diff", "withfile:1").stdout
    assert "A /hello" in out, out


def test_libpod_commit_and_resolve(env):
    e, sock, tmp = env["env"], env["sock"], env["tmp"]
    cli = [sys.executable, "-m", "kiln.cli.main", "--root", str(tmp / "root")]
    name = run(e, [*cli, "from", "--name", "tocommit", "base:1"]).stdout.strip()
    assert name == "tocommit"
    code, body = curl(
        e, sock, "POST", "/v4.0.0/libpod/commit?container=tocommit&repo=committed&tag=1"
    )
    assert code == 200, body
    image_id = json.loads(body)["Id"]
    assert len(image_id) == 64
    code, body = curl(e, sock, "GET", "/v4.0.0/libpod/images/committed:1/json")
    assert code == 200 and json.loads(body)["RepoTags"] == ["localhost/committed:1"]
    code, body = curl(e, sock, "GET", "/v4.0.0/libpod/images/busybox/resolve")
    assert code == 200, body
    assert json.loads(body)["Names"] == [
        "docker.io/library/busybox:latest",
        "quay.io/busybox:latest",
    ]


def test_container_routes_say_kiln_runs_no_containers(env):
    e = env["env"]
    r = run(e, [DOCKER, "run", "--rm", "base:1", "true"], ok=False)
    assert r.returncode != 0 and "does not run containers" in r.stderr, r.stderr
    assert "Unable to find image" not in r.stderr
    r = run(e, [DOCKER, "ps"], ok=False)
    assert r.returncode != 0 and "does not run containers" in r.stderr, r.stderr
    # generic inspect still finds the image of that name
    assert run(e, [DOCKER, "inspect", "--format", "{{.Id}}", "base:1"]).stdout.startswith("sha256:")
    code, body = curl(e, env["sock"], "POST", "/v1.41/containers/create")
    assert code == 501 and "kiln from" in json.loads(body)["message"]
    if PODMAN:
        r = podman(env, "ps", ok=False)
        assert r.returncode != 0 and "does not run containers" in r.stderr, r.stderr


def test_start_up_is_logged_as_information_not_a_warning(env):
    log = (env["tmp"] / "server.err").read_text()
    assert "INFO[kiln.api] kiln API listening on unix://" in log, log[-2000:]
    assert "WARNING[kiln.api] kiln API listening" not in log
