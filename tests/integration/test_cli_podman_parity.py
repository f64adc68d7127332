"""The image-store commands print what podman 4.3 prints, on the same images.

kiln makes three images (labels, environment, several names, one left dangling), saves them as
a docker-archive that podman loads into its own private store, and each command line below runs
in both; stdout and exit codes must agree. Left out of the comparison on purpose: ages ("3
seconds ago" ticks between the two runs), sizes (podman adds the manifest and config it wrote
to an image's size), manifest digests (podman writes its own manifest when it loads), and the
order of rows with the same creation time (podman sorts them unstably): multi-row outputs are
compared as sorted lines. Two label filters must both hold, as in Docker and podman 5 (podman
4.3 takes either: containers/podman#18412, fixed in 5.0): the case here has the same answer both
ways.
"""

from __future__ import annotations

import json
import os
import re
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


@pytest.fixture(scope="module")
def both(tmp_path_factory, busybox_rootfs_tar, podman):
    """``run(*args)`` -> ((podman rc, stdout), (kiln rc, stdout)) on the same three images
    (``stderr=True``: each with its stderr too)."""
    root = tmp_path_factory.mktemp("kiln") / "root"
    # a podman store of its own: the session's holds what other test files loaded into it
    podman = Podman(str(tmp_path_factory.mktemp("podman-parity")))

    def kiln(*args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, KILN_ROOT=str(root))
        return subprocess.run(
            [KILN, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    def ok(res: subprocess.CompletedProcess) -> None:
        assert res.returncode == 0, res.stderr

    env = ["-c", "ENV A=1 B=two", "-c", "LABEL maintainer=me", "-c", 'CMD ["/bin/sh"]']
    ok(kiln("import", *env, "-c", "LABEL org.x.version=1.2", busybox_rootfs_tar, "bb:1"))
    ok(kiln("tag", "bb:1", "bb:2", "quay.io/team/bb:3"))
    ok(kiln("import", *env, "-c", "LABEL stage=two", busybox_rootfs_tar, "two:1"))
    ok(kiln("import", *env, "-c", "LABEL gone=1", busybox_rootfs_tar, "gone:1"))
    archive = str(root.parent / "all.tar")
    names = ["bb:1", "bb:2", "quay.io/team/bb:3", "two:1", "gone:1"]
    ok(kiln("save", "-o", archive, *names))
    podman("load", "-q", "-i", archive)
    ok(kiln("untag", "gone:1"))
    podman("untag", "localhost/gone:1")

    def run(*args: str, stderr: bool = False):
        p = podman(*args, check=False)
        k = kiln(*args)
        if stderr:
            return (p.returncode, p.stdout, p.stderr), (k.returncode, k.stdout, k.stderr)
        return (p.returncode, p.stdout), (k.returncode, k.stdout)

    return run


SAME = [
    ("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"),
    ("images", "--no-trunc", "--format", "{{.ID}} {{.Dangling}} {{.Containers}} {{.ReadOnly}}"),
    (
        "images",
        "--format",
        '{{index .Labels "stage"}}|{{range $k, $v := .Labels}}{{$k}}={{$v}},{{end}}',
    ),
    ("images", "--format", "{{.Repository}} {{if .Labels.stage}}staged{{else}}plain{{end}}"),
    ("images", "--format", "table {{.ID}}\t{{.Repository}}\t{{.Tag}}", "two"),
    ("images", "--format", "{{json .Labels}} {{.Labels}} {{.CreatedAt}}", "two"),
    ("images", "--no-trunc", "--format", "{{.Id}} {{.ID}} {{.CreatedTime}}", "two"),
    ("images", "-q", "--filter", "dangling=true"),
    ("images", "-q", "--filter", "readonly=false"),
    ("images", "-q", "--filter", "readonly=true"),
    ("images", "-q", "--filter", "containers=false"),
    ("images", "-q", "--filter", "label=stage=two"),
    ("images", "-q", "--filter", "label=org.x.version", "--filter", "label=org.x.version=1.2"),
    ("images", "-q", "--filter", "reference=*/bb:*"),
    ("images", "--no-trunc", "-q", "bb"),
    ("images", "--quiet=true", "--no-trunc=1", "--all=false", "bb"),  # pflag's booleans
    ("images", "-q=true", "--noheading=false", "two"),
    ("rmi", "--force=true", "nosuch"),
    ("inspect", "--format", '{{index .Labels "maintainer"}} {{join .Config.Env ","}}', "bb:1"),
    (
        "inspect",
        "--format",
        "{{len .RootFS.Layers}} {{json .Config.Labels}} {{.Config.Cmd}}",
        "bb:1",
    ),
    ("inspect", "--format", "{{range .Config.Env}}[{{.}}]{{end}} {{upper .Os}}", "bb:1"),
    ("inspect", "--format", "{{.Created}} {{json .Created}} {{.Id}}", "bb:1"),
    # fields the image leaves out read as Go's zero values (nil slices and maps), not errors
    (
        "inspect",
        "--format",
        "{{.Config.Entrypoint}}|{{json .Config.Entrypoint}}|{{.Config.User}}|{{.Config.Volumes}}"
        "|{{len .Config.ExposedPorts}}|{{range .Config.Entrypoint}}x{{end}}|{{.Config.StopSignal}}"
        "|{{if .Config.WorkingDir}}w{{end}}|{{.Config.ArgsEscaped}}|{{.HealthCheck}}",
        "bb:1",
    ),
    ("inspect", "--format", "{{.Nope}}", "bb:1"),
    ("inspect", "-f", "{{.Os}} {{.Architecture}}", "bb:1", "two:1"),  # -f: podman's and docker's
    ("image", "inspect", "-f", "{{.Config.Cmd}}", "bb:1"),
    ("inspect", "--format", "{{nofunc .Os}}", "bb:1"),
    ("inspect", "nosuch"),
    ("history", "--no-trunc", "-q", "bb:1"),
    ("history", "--no-trunc", "--format", "{{.ID}} {{.CreatedAt}} {{.Comment}}", "bb:1"),
    ("history", "-H=false", "--format", "{{.ID}} {{.Created}}", "bb:1"),
    ("history", "--human=false", "--format", "{{.Created}}", "two:1"),
    ("history", "nosuch"),
    ("images", "--filter", "nosuch=1"),
]


@pytest.mark.parametrize("args", SAME, ids=[" ".join(a) for a in SAME])
def test_same_output_as_podman(both, args):
    (p_rc, p_out), (k_rc, k_out) = both(*args)
    assert k_rc == p_rc
    assert sorted(k_out.splitlines()) == sorted(p_out.splitlines())


SAME_ERRORS = [
    ("inspect", "nosuch"),
    ("inspect", "--type", "container", "bb:1"),
    ("inspect", "--type", "image", "nosuch"),
    ("tag", "nosuch", "x:1"),
    ("rmi", "nosuch"),
]


@pytest.mark.parametrize("args", SAME_ERRORS, ids=[" ".join(a) for a in SAME_ERRORS])
def test_same_error_as_podman(both, args):
    podman, kiln = both(*args, stderr=True)
    assert kiln == podman


def test_json_template_is_the_json_format(both):
    (_, p_out), (_, k_out) = both("images", "--format", "{{json .}}")
    p_ids = {i["Id"] for i in json.loads(p_out)}  # podman: one object per name
    assert {i["Id"] for i in json.loads(k_out)} == p_ids


def test_system_df_template_and_sizes_as_podman(both):
    # the rows differ on purpose (kiln counts each layer once and has a build cache, podman
    # has containers and volumes); the fields and the size form (go-units: 13.94MB) agree
    (p_rc, p_out), (k_rc, k_out) = both("system", "df", "--format", "{{.Type}}|{{.Size}}")
    form = re.compile(r"Images\|\d+(\.\d+)?[kMG]?B")
    assert p_rc == k_rc == 0
    assert form.fullmatch(p_out.splitlines()[0]) and form.fullmatch(k_out.splitlines()[0])
    (_, p_out), (_, k_out) = both("system", "df")
    heading = [re.split(r"\s{2,}", out.splitlines()[0]) for out in (p_out, k_out)]
    assert heading[0] == heading[1] == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]


def test_image_tree_layer_lines_as_podman(both):
    # a layer's size has go-units' 4 digits (1.987MB); the images a layer tops are named in
    # an order of their own, so the names are compared as a set
    (p_rc, p_out), (k_rc, k_out) = both("image", "tree", "two:1")
    assert p_rc == k_rc == 0

    def layer(out: str) -> tuple[str, set[str]]:
        line = out.splitlines()[4]
        head, _, names = line.partition(" Top Layer of: ")
        return head, set(names.strip("[]").split())

    assert layer(k_out) == layer(p_out)


def test_events_as_podman_prints_them(both):
    # podman's events go to a journal shared with every podman on the machine, so only kiln
    # runs here: podman's --stream=false, its template fields and its line for an image event
    # (time, type, status, ID without sha256:, name)
    (_, (rc, out)) = both("events", "--stream=false", "--format", "{{.Type}} {{.Status}} {{.Name}}")
    assert rc == 0 and "image tag localhost/bb:2" in out.splitlines()
    (_, (rc, out)) = both("events", "--stream", "false", "--format", "{{.Status}} {{.Name}}")
    assert rc != 0  # a Go flag takes its value after "=", never from the next argument
    (_, (rc, out)) = both("events", "--no-stream", "--format", "{{.Type}} {{.Status}} {{.Name}}")
    assert rc == 0 and "image tag localhost/bb:2" in out.splitlines()
    (_, (rc, out)) = both("events", "--stream=false", "--filter", "event=import")
    assert rc == 0
    line = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} \+0000 UTC image import [0-9a-f]{64} localhost/"
    assert [re.sub(line, "", x) for x in out.splitlines()] == ["bb:1", "two:1", "gone:1"]


def test_repo_digests_name_every_repository_at_the_digest(both):
    # podman wrote its own manifest when it loaded the archive: each side's digest is its own
    outs = both("inspect", "--format", "{{.Digest}}{{range .RepoDigests}} {{.}}{{end}}", "bb:1")
    seen = []
    for rc, out in outs:
        assert rc == 0
        digest, *repo_digests = out.split()
        seen.append({d.replace(digest, "D") for d in repo_digests})
    assert seen[1] == seen[0] == {"localhost/bb@D", "quay.io/team/bb@D"}
