"""The docker CLI's image commands (rmi, load, push, pull, image prune, system df) against
``kiln serve``, where they differed from a dockerd: each test says what dockerd 20.10
answers to the same commands and what kiln answered before.
"""

from __future__ import annotations

import json
import re

import pytest

from api_server import request
from docker_cli_fixture import context, needs_debian_docker

pytest_plugins = ["docker_cli_fixture"]
pytestmark = needs_debian_docker

CLASSIC = {"DOCKER_BUILDKIT": "0"}


def _image_id(kiln, name: str) -> str:
    return kiln("image", "inspect", "-f", "{{.Id}}", name).stdout.decode().strip()


def test_rmi_by_id_of_an_image_with_two_tags_is_dockerds_conflict(kiln):
    """dockerd: 409 ``conflict: unable to delete <id> (must be forced) - image is referenced
    in multiple repositories``; ``-f`` untags both and deletes it. kiln answered 400 with
    podman's wording."""
    kiln("tag", "base:1", "two:1")
    kiln("tag", "base:1", "two:2")
    short = _image_id(kiln, "two:1").removeprefix("sha256:")[:12]
    status, _, body = request(kiln.sock, "DELETE", f"/v1.41/images/{short}")
    assert status == 409, body
    assert json.loads(body)["message"] == (
        f"conflict: unable to delete {short} (must be forced) - image is referenced in "
        "multiple repositories"
    )
    r = kiln("rmi", short, check=False)
    assert r.returncode == 1 and b"must be forced" in r.stderr
    out = kiln("rmi", "-f", short).stdout.decode().splitlines()
    assert {"Untagged: base:1", "Untagged: two:1", "Untagged: two:2"} <= set(out), out
    assert f"Deleted: sha256:{short}" in " ".join(out)


def test_a_load_that_fails_is_in_the_stream_as_dockerd_sends_it(kiln, tmp_path):
    """dockerd answers ``POST /images/load`` of a bad archive with 200 and the error in the
    stream (the CLI prints it without 'Error response from daemon'; docker-py raises
    ImageLoadError); kiln answered 400 (docker-py: APIError)."""
    docker_py = pytest.importorskip("docker")
    for body in (b"not a tar\n", b""):
        status, _, raw = request(kiln.sock, "POST", "/v1.41/images/load?quiet=1", body,
                                 {"Content-Type": "application/x-tar"})  # fmt: skip
        assert status == 200, raw
        last = json.loads(raw.decode().splitlines()[-1])
        assert last["error"] and last["errorDetail"]["message"] == last["error"]
    r = kiln("load", input=b"not a tar\n", check=False)
    assert r.returncode == 1 and b"Error response from daemon" not in r.stderr, r.stderr
    client = docker_py.DockerClient(base_url=f"unix://{kiln.sock}", version="1.41")
    try:
        with pytest.raises(docker_py.errors.ImageLoadError):
            client.images.load(b"not a tar\n")
    finally:
        client.close()


def test_pushing_an_image_that_is_not_here_says_so_in_the_stream(kiln):
    """dockerd: 200, ``The push refers to repository [...]``, then the error ``An image does
    not exist locally with the tag: <repository>``; kiln answered 404 before the stream."""
    status, _, raw = request(kiln.sock, "POST", "/v1.41/images/127.0.0.1:9/nosuch/push?tag=1",
                             headers={"X-Registry-Auth": "e30="})  # fmt: skip
    assert status == 200, raw
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert lines[0] == {"status": "The push refers to repository [127.0.0.1:9/nosuch]"}
    assert lines[-1]["error"] == "An image does not exist locally with the tag: 127.0.0.1:9/nosuch"
    r = kiln("push", "127.0.0.1:9/nosuch:1", check=False)
    assert r.returncode == 1
    assert (
        r.stderr.decode().strip()
        == "An image does not exist locally with the tag: 127.0.0.1:9/nosuch"
    )


def test_a_pull_of_what_is_already_here_says_up_to_date(kiln, registry_plain):
    """``docker pull`` of a tag that already names the registry's image: dockerd prints
    ``Status: Image is up to date for <name>``, ``Downloaded newer image`` only when the
    name moved (scripts tell the two apart); kiln always said 'Downloaded newer image'.
    Its first line names the repository's path (``1: Pulling from team/app``); kiln's named
    the registry too."""
    ref = f"{registry_plain.host}/docker-cli-pull/base:1"
    kiln("tag", "base:1", ref)
    kiln("push", ref)
    kiln("rmi", ref)
    fresh = kiln("pull", ref).stdout.decode()
    assert f"Status: Downloaded newer image for {ref}" in fresh, fresh
    assert fresh.startswith("1: Pulling from docker-cli-pull/base\n"), fresh  # the path alone
    again = kiln("pull", ref).stdout.decode()
    assert f"Status: Image is up to date for {ref}" in again, again
    assert re.search(r"^Digest: sha256:[0-9a-f]{64}$", again, re.M), again


def test_image_prune_that_removes_nothing_answers_null(kiln):
    """dockerd: ``{"ImagesDeleted": null, "SpaceReclaimed": 0}`` (as its build prune's
    ``CachesDeleted``); kiln answered ``[]``."""
    status, _, raw = request(kiln.sock, "POST", "/v1.41/images/prune")
    assert status == 200 and json.loads(raw) == {"ImagesDeleted": None, "SpaceReclaimed": 0}


def test_system_df_counts_the_images_docker_images_shows(kiln, tmp_path):
    """A two-step build leaves intermediate images (``docker images -a`` shows them):
    dockerd's ``system df`` counts and lists only the images ``docker images`` shows;
    kiln counted every image."""
    ctx = context(tmp_path, "FROM base:1\nLABEL a=1\nLABEL b=2\nLABEL c=3\n")
    kiln("build", "-q", "-t", "df:1", str(ctx), env_extra=CLASSIC)
    every = set(kiln("images", "-aq").stdout.decode().split())
    shown = set(kiln("images", "-q").stdout.decode().split())
    assert len(every) > len(shown) == 2
    status, _, raw = request(kiln.sock, "GET", "/v1.41/system/df")
    listed = {i["Id"].removeprefix("sha256:")[:12] for i in json.loads(raw)["Images"]}
    assert status == 200 and listed == shown
    total = kiln("system", "df", "--format", "{{.Type}} {{.TotalCount}}").stdout.decode()
    assert "Images 2" in total.splitlines(), total


def test_system_prune_prunes_the_images_as_kiln_has_no_containers_networks_or_volumes(kiln):
    """``docker system prune -a -f`` asks containers, networks and volumes to be pruned
    first: dockerd with none answers that nothing went, then prunes the images. kiln
    answered the container prune 501 ('does not run containers') and the CLI stopped
    there, pruning nothing."""
    kiln("tag", "base:1", "unused:1")
    r = kiln("system", "prune", "-a", "-f", "--volumes")
    out = r.stdout.decode()
    assert "untagged: unused:1" in out and "Total reclaimed space:" in out, out
    assert kiln("images", "-q").stdout == b""
    for kind, body in (
        ("containers", {"ContainersDeleted": None, "SpaceReclaimed": 0}),
        ("networks", {"NetworksDeleted": None}),
        ("volumes", {"VolumesDeleted": [], "SpaceReclaimed": 0}),
    ):
        status, _, raw = request(kiln.sock, "POST", f"/v1.41/{kind}/prune")
        assert (status, json.loads(raw)) == (200, body)


def test_rmi_of_a_repo_digest_removes_that_reference_alone(kiln, registry_plain):
    """``docker rmi REPO@DIGEST`` of a pushed image that still has its tags: dockerd removes
    the digest reference only (``Untagged: REPO@DIGEST``; the image, its tags and its other
    digests stay). kiln deleted the image when it had one name, and refused with podman's
    'by digest with more than one tag' when it had more."""
    rootfs = str(kiln.tmp / "rootfs.tar")
    for names in ([], ["two:1", "two:2"]):
        ref = f"{registry_plain.host}/docker-cli-rmi/x{len(names)}:1"
        kiln("import", "-c", f"LABEL names={len(names)}", rootfs, ref)  # its only name, ...
        for name in names:  # ... or one of three
            kiln("tag", ref, name)
        kiln("push", ref)
        digests = kiln("image", "inspect", "-f", "{{json .RepoDigests}}", ref).stdout
        (repo_digest,) = json.loads(digests)
        out = kiln("rmi", repo_digest).stdout.decode()
        assert out.splitlines() == [f"Untagged: {repo_digest}"], out
        after = kiln("image", "inspect", "-f", "{{json .RepoTags}} {{json .RepoDigests}}", ref)
        tags, digests = after.stdout.decode().split()
        assert set(json.loads(tags)) == {*names, ref} and json.loads(digests) == []


def test_push_all_tags_pushes_every_tag_of_the_repository(kiln, tmp_path, registry_plain):
    """``docker push --all-tags REPO`` (and docker-py's ``push(REPO)``) sends no tag:
    dockerd pushes every local tag of the repository, a digest line for each. kiln pushed
    REPO:latest alone, and failed when there was none."""
    import urllib.request

    repo = f"{registry_plain.host}/docker-cli-all/x"
    kiln("tag", "base:1", f"{repo}:1")
    ctx = context(tmp_path, "FROM base:1\nLABEL two=2\n")
    kiln("build", "-q", "-t", f"{repo}:2", str(ctx), env_extra=CLASSIC)
    out = kiln("push", "--all-tags", repo).stdout.decode()
    assert re.search(r"^1: digest: sha256:[0-9a-f]{64} size: \d+$", out, re.M), out
    assert re.search(r"^2: digest: sha256:[0-9a-f]{64} size: \d+$", out, re.M), out
    url = f"http://{registry_plain.host}/v2/docker-cli-all/x/tags/list"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert sorted(json.loads(r.read())["tags"]) == ["1", "2"]
    r = kiln("push", "--all-tags", f"{registry_plain.host}/docker-cli-all/none", check=False)
    assert r.returncode == 1 and b"An image does not exist locally with the tag" in r.stderr
    # a tag the repository does not have, when it has others: dockerd's other answer
    r = kiln("push", f"{repo}:3", check=False)
    assert r.returncode == 1 and r.stderr.decode().strip() == f"tag does not exist: {repo}:3"
