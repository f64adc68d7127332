"""The docker CLI's image commands (rmi, load, push, pull, image prune, system df) against
``kiln serve``, where they differed from a dockerd: each test says what dockerd 20.10
answers to the same commands and what kiln answered before.
"""

from __future__ import annotations

import json

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
