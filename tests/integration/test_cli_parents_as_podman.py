"""Parents, children and dangling images on kiln's CLI as podman 4.3 shows them, on the same
images (kiln makes them, saves them, podman loads them: the IDs agree):

- ``base:1``, an import; ``labelled:1``, a build step that only adds a label (no layer);
- ``app:1`` on an unnamed step that added a layer (an intermediate image);
- an unnamed second import of the same tarball: it shares base's layer, not its history,
  so it is nobody's parent: dangling, listed and pruned (kiln called it a parent by its
  layer, hid it from ``images`` and kept it from prune).

Each check runs one command in both and compares the outputs."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fixtures_images import Podman

pytest_plugins = ["fixtures_images"]

KILN = shutil.which("kiln")
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(KILN is None, reason="the kiln console script is not installed"),
]

ROWS = ("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.ParentId}} {{.Dangling}}")


@pytest.fixture(scope="module")
def shown(tmp_path_factory, busybox_rootfs_tar):
    """The images, for the tests that only look."""
    return _made(tmp_path_factory.mktemp("parents"), busybox_rootfs_tar)


@pytest.fixture
def both(tmp_path_factory, busybox_rootfs_tar):
    """The images, for a test that removes some."""
    return _made(tmp_path_factory.mktemp("parents"), busybox_rootfs_tar)


def _made(tmp_path, busybox_rootfs_tar):
    """``run(*args)`` -> ((podman rc, sorted lines), (kiln rc, sorted lines)) over the
    images of the module docstring, made in a short temporary directory (podman's run
    root must be under 50 characters)."""
    env = dict(os.environ, KILN_ROOT=str(tmp_path / "root"))
    podman = Podman(str(tmp_path / "p"))

    def kiln(*args: str) -> str:
        res = subprocess.run(
            [KILN, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def build(tag: str, dockerfile: str) -> None:
        ctx = tmp_path / tag.replace(":", "-")
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(dockerfile)
        (ctx / "f.txt").write_text("layer\n")
        kiln("build", "-q", "-t", tag, str(ctx))

    kiln("import", "-q", busybox_rootfs_tar, "base:1")
    build("labelled:1", "FROM base:1\nLABEL x=1\n")
    build("step:1", "FROM base:1\nCOPY f.txt /f.txt\n")
    build("app:1", 'FROM step:1\nCMD ["/bin/sh"]\n')
    kiln("import", "-q", "-m", "again", busybox_rootfs_tar, "again:1")
    archive = str(tmp_path / "all.tar")
    kiln("save", "-o", archive, "base:1", "labelled:1", "step:1", "app:1", "again:1")
    podman("load", "-q", "-i", archive)
    for name in ("step:1", "again:1"):
        kiln("untag", name)
        podman("untag", f"localhost/{name}")

    def run(*args: str):
        p = podman(*args, check=False)
        k = subprocess.run(
            [KILN, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        ours = (k.returncode, sorted(k.stdout.splitlines()))
        return (p.returncode, sorted(p.stdout.splitlines())), ours

    return run


@pytest.mark.parametrize(
    "args",
    [
        ROWS,
        ("images", "-q", "--no-trunc"),
        ("images", "-q", "--no-trunc", "--filter", "dangling=true"),
        ("images", "-a", "-q", "--no-trunc", "--filter", "intermediate=true"),
    ],
    ids=["ParentId and Dangling", "intermediate images hidden", "dangling", "intermediate"],
)
def test_listings_are_podmans(shown, args):
    podman, kiln = shown(*args)
    assert kiln == podman


def test_inspect_parent_is_images_parent_id(shown):
    """kiln's two answers agree with each other and with podman's (a listing's ParentId
    was by layers only: none for labelled:1, whose inspect said base:1)."""
    _, (_, rows) = shown(*ROWS)
    assert len(rows) == 5
    for row in rows:
        image_id, parent_id, _dangling = row.split(" ")
        podman, kiln = shown("inspect", "--format", "{{.Parent}}", image_id)
        assert kiln == podman == (0, [parent_id.removeprefix("sha256:")])


def _ids(answer):
    """An rmi's or a prune's lines, without kiln's 'Total reclaimed space' (podman 4.3
    prints none)."""
    rc, lines = answer
    return rc, [line for line in lines if not line.startswith("Total reclaimed space")]


def test_rmi_of_a_parent_and_prune_are_podmans(both):
    """rmi of a named parent deletes it (its children keep their data), rmi of a built
    image takes the intermediate images it leaves dangling, prune takes the dangling
    import, prune -a the rest."""
    for step in (("rmi", "base:1"), ("image", "prune", "-f"), ("rmi", "app:1"),
                 ("image", "prune", "-a", "-f")):  # fmt: skip
        podman, kiln = both(*step)
        assert _ids(kiln) == _ids(podman), step
        podman, kiln = both(*ROWS)
        assert kiln == podman, step
