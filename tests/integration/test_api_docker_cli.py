"""The real docker CLI against ``kiln serve`` on a temporary unix socket."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
import uuid

import pytest

from docker_cli_fixture import docker_cli

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")


def has_ops(name: str) -> bool:
    return importlib.util.find_spec(f"kiln.ops.{name}") is not None


needs_build = pytest.mark.skipif(not has_ops("build"), reason="waiting for ops.build")
needs_registry = pytest.mark.skipif(not has_ops("registry"), reason="waiting for ops.registry")


@pytest.fixture
def server(tmp_path):
    with docker_cli(tmp_path, DOCKER, access_log=str(tmp_path / "access.log")) as docker:
        yield docker


def images(docker) -> list[dict]:
    out = docker("images", "--format", "{{json .}}").stdout.decode()
    return [json.loads(line) for line in out.splitlines() if line]


def test_socket_mode_and_access_log(server):
    assert stat.S_IMODE(os.stat(server.sock).st_mode) == 0o660
    server("version")
    deadline = time.monotonic() + 20  # the line is written just after the response
    while time.monotonic() < deadline:
        log = (server.tmp / "access.log").read_text()
        if "/version" in log:
            break
        time.sleep(0.05)
    assert '"GET /v1.' in log and '/version HTTP/1.1" 200' in log


def test_images_inspect_history_tag_rmi(server):
    rows = images(server)
    assert [(r["Repository"], r["Tag"]) for r in rows] == [("base", "1")]
    data = json.loads(server("image", "inspect", "base:1").stdout)
    assert data[0]["Id"].startswith("sha256:") and data[0]["RepoTags"] == ["base:1"]
    assert data[0]["Os"] == "linux" and len(data[0]["RootFS"]["Layers"]) == 1
    hist = server("history", "--no-trunc", "--format", "{{.ID}} {{.Comment}}", "base:1")
    assert hist.stdout.decode().split()[0] == data[0]["Id"]
    server("tag", "base:1", "localhost:5000/team/base:2")
    assert {(r["Repository"], r["Tag"]) for r in images(server)} == {
        ("base", "1"),
        ("localhost:5000/team/base", "2"),
    }
    out = server("rmi", "localhost:5000/team/base:2").stdout.decode()
    assert "Untagged: localhost:5000/team/base:2" in out
    r = server("rmi", "nosuch:9", check=False)
    assert r.returncode != 0 and b"No such image: nosuch:9" in r.stderr


def test_save_load_roundtrip(server):
    image_id = json.loads(server("image", "inspect", "base:1").stdout)[0]["Id"]
    saved = server("save", "base:1").stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        assert "manifest.json" in tf.getnames()
    server("rmi", "base:1")
    assert images(server) == []
    out = server("load", input=saved).stdout.decode()
    assert "Loaded image: base:1" in out
    assert json.loads(server("image", "inspect", "base:1").stdout)[0]["Id"] == image_id


def test_image_prune(server):
    server("tag", "base:1", "keep:1")
    server("rmi", "base:1")
    out = server("image", "prune", "-f").stdout.decode()
    assert "Total reclaimed space" in out
    assert [(r["Repository"], r["Tag"]) for r in images(server)] == [("keep", "1")]
    out = server("image", "prune", "-a", "-f").stdout.decode()
    assert "deleted: sha256:" in out.lower()
    assert images(server) == []


def test_system_df(server):
    server("tag", "base:1", "other:2")
    rows = [json.loads(line) for line in server("system", "df", "--format", "{{json .}}")
            .stdout.decode().splitlines()]  # fmt: skip
    by_type = {r["Type"]: r for r in rows}
    assert by_type["Images"]["TotalCount"] == "1" and by_type["Images"]["Active"] == "0"
    assert by_type["Images"]["Size"].endswith("MB") and "(100%)" in by_type["Images"]["Reclaimable"]
    assert by_type["Containers"]["TotalCount"] == by_type["Build Cache"]["TotalCount"] == "0"
    out = server("system", "df", "-v").stdout.decode()
    image_id = json.loads(server("image", "inspect", "base:1").stdout)[0]["Id"]
    [row] = [line for line in out.splitlines() if image_id.removeprefix("sha256:")[:12] in line]
    assert row.split()[-1] == "0" and "Containers space usage" in out


DOCKERFILE = """\
FROM base:1 AS first
ARG GREETING=hello
LABEL stage=first
RUN echo "$GREETING" > /greeting
FROM first AS second
RUN echo second > /second
"""


@needs_build
@pytest.mark.root
def test_build_flags(server, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "other.Dockerfile").write_text(DOCKERFILE)
    out = server(
        "build",
        "-f",
        str(ctx / "other.Dockerfile"),
        "--build-arg",
        "GREETING=hi",
        "--target",
        "first",
        "--label",
        "team=kiln",
        "-t",
        "built:1",
        str(ctx),
    )
    text = out.stdout.decode() + out.stderr.decode()
    assert "Successfully built" in text and "Successfully tagged built:1" in text
    data = json.loads(server("image", "inspect", "built:1").stdout)[0]
    assert data["Config"]["Labels"] == {"stage": "first", "team": "kiln"}
    quiet = server("build", "-q", "--no-cache", "-f", str(ctx / "other.Dockerfile"), str(ctx))
    assert quiet.stdout.decode().strip().startswith("sha256:")


# Debian's docker.io client (20.10): its classic builder sends every flag, unset ones as
# shmsize=0, ulimits=null, memory=0, networkmode=default
DEBIAN_DOCKER = "/usr/bin/docker"


@needs_build
@pytest.mark.skipif(not os.path.exists(DEBIAN_DOCKER), reason="Debian's docker.io not installed")
def test_build_with_the_classic_client_s_unset_flags(server, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM base:1\nRUN echo hi > /hi\nCMD ["/bin/sh"]\n')
    env = dict(server.env, DOCKER_BUILDKIT="0")
    r = subprocess.run([DEBIAN_DOCKER, "build", "-t", "classic:1", str(ctx)], env=env,
                       capture_output=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert b"Successfully tagged classic:1" in r.stdout
    data = json.loads(server("image", "inspect", "classic:1").stdout)[0]
    assert data["Config"]["Cmd"] == ["/bin/sh"] and len(data["RootFS"]["Layers"]) == 2


@needs_registry
def test_pull_push_with_local_registry(server, registry_plain):
    ref = f"{registry_plain.host}/docker-cli/base:1"
    server("tag", "base:1", ref)
    out = server("push", ref).stdout.decode()
    pushed = re.search(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)", out)
    assert pushed and int(pushed.group(2)) > 0, out  # the manifest's size, as dockerd says
    server("rmi", ref)
    out = server("pull", ref).stdout.decode()
    assert "Digest: sha256:" in out
    assert ref in {f"{r['Repository']}:{r['Tag']}" for r in images(server)}
    found = server("search", f"{registry_plain.host}/docker-cli").stdout.decode()
    assert "docker-cli/base" in found


@needs_registry
def test_search_of_a_local_registry_through_the_docker_cli_and_docker_py(server, registry_plain):
    """``docker search HOST/TERM`` and docker-py's ``images.search`` against a registry without
    ``/v1/search``: its catalog, the repositories whose name holds the term, each with the
    registry's name, no description or stars; ``--limit`` and ``--filter`` apply."""
    docker_py = pytest.importorskip("docker")
    host = registry_plain.host
    team = f"search-{uuid.uuid4().hex[:12]}"  # this test's alone in the shared registry
    for repo in ("alpha", "alphabet", "beta"):
        server("tag", "base:1", f"{host}/{team}/{repo}:1")
        server("push", f"{host}/{team}/{repo}:1")
    out = server("search", "--no-trunc", "--format", "{{.Name}}|{{.Description}}|{{.StarCount}}|{{.IsOfficial}}",
                 f"{host}/{team}/alpha").stdout.decode()  # fmt: skip
    # (the CLI prints a true IsOfficial as "[OK]", a false one as nothing)
    assert sorted(out.splitlines()) == sorted(
        [f"{host}/{team}/alpha||0|", f"{host}/{team}/alphabet||0|"]
    )
    every = server("search", "--format", "{{.Name}}", f"{host}/{team}").stdout.decode().split()
    assert sorted(every) == [f"{host}/{team}/{r}" for r in ("alpha", "alphabet", "beta")]
    one = server("search", "--limit", "1", "--format", "{{.Name}}", f"{host}/{team}").stdout
    assert len(one.decode().split()) == 1
    official = server("search", "--filter", "is-official=true", f"{host}/{team}").stdout
    assert official.decode().splitlines()[1:] == []  # the header line only
    assert server("search", f"{host}/{team}/nothing-like-it").stdout.decode().splitlines()[1:] == []
    client = docker_py.DockerClient(base_url=f"unix://{server.sock}", version="auto")
    try:
        found = client.images.search(f"{host}/{team}/beta")
    finally:
        client.close()
    assert found == [
        {"name": f"{host}/{team}/beta", "description": "", "star_count": 0,
         "is_official": False, "is_automated": False}
    ]  # fmt: skip
