"""The image verbs through click's CliRunner: output shapes, exit codes, error lines."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from ops_image_factory import add_container, make_image

from kiln.cli.main import cli

pytest_plugins = ["fixtures_images"]


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "root")


@pytest.fixture
def store(root):
    from kiln.store import Store

    s = Store.open(root)
    yield s
    s.close()


def kiln(root, *args, input=None):
    runner = CliRunner()
    return runner.invoke(cli, ["--root", root, *args], input=input, catch_exceptions=False)


def lines(result):
    return result.stdout.splitlines()


def test_help_lists_the_image_verbs_and_imports_nothing_heavy():
    import subprocess
    import sys

    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for verb in ("images", "inspect", "history", "tag", "untag", "rmi", "save", "load", "import"):
        assert f"  {verb} " in res.stdout
    code = (
        "import sys, kiln.cli.main as m\n"
        "heavy = [n for n in ('kiln.store', 'kiln.image', 'kiln.ops.images', 'rich', 'sqlite3',"
        " 'httpx') if n in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_image_group_has_podman_aliases():
    res = CliRunner().invoke(cli, ["image", "--help"])
    assert res.exit_code == 0
    for verb in ("ls", "list", "rm", "exists", "prune", "tree", "diff", "inspect", "save", "load"):
        assert f"  {verb} " in res.stdout


def test_images_table_quiet_json_and_template(root, store):
    a = make_image(store, ["a"], ["busybox:latest"])
    b = make_image(store, ["b"], ["localhost/app:v1", "localhost/app:v2"])
    res = kiln(root, "images")
    assert res.exit_code == 0
    out = lines(res)
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert [r.split()[:3] for r in out[1:]] == [
        ["localhost/app", "v1", b.id[7:19]],
        ["localhost/app", "v2", b.id[7:19]],
        ["docker.io/library/busybox", "latest", a.id[7:19]],
    ]
    assert out[1].endswith("ago  10.2 kB")
    assert lines(kiln(root, "images", "-q")) == [b.id[7:19], a.id[7:19]]
    assert lines(kiln(root, "images", "-q", "--no-trunc")) == [b.id, a.id]
    data = json.loads(kiln(root, "images", "--format", "json").stdout)
    assert [d["Id"] for d in data] == [b.id[7:], a.id[7:]]
    assert data[0]["Names"] == ["localhost/app:v1", "localhost/app:v2"]
    res = kiln(root, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert lines(res) == [
        "localhost/app:v1",
        "localhost/app:v2",
        "docker.io/library/busybox:latest",
    ]
    assert lines(kiln(root, "images", "busybox", "-q")) == [a.id[7:19]]
    res = kiln(root, "images", "--digests")
    assert lines(res)[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert a.manifest_digest in res.stdout


def test_dangling_image_shows_none(root, store):
    old = make_image(store, ["a"], ["localhost/app:latest"])
    make_image(store, ["b"], [])
    # the name moves to the newer image, the old one is left <none>
    res = kiln(root, "tag", old.id[7:19], "app:latest")
    assert res.exit_code == 0
    res = kiln(root, "tag", make_image(store, ["c"]).id, "app")
    table = lines(kiln(root, "images"))
    assert sum(1 for r in table if r.split()[:2] == ["<none>", "<none>"]) == 2
    res = kiln(root, "images", "-f", "dangling=true", "-q")
    assert old.id[7:19] in lines(res)


def test_inspect_and_history(root, store):
    img = make_image(store, ["a", "b"], ["app:1"])
    res = kiln(root, "inspect", "app:1")
    assert res.exit_code == 0
    [obj] = json.loads(res.stdout)
    assert obj["Id"] == img.id[7:]
    assert lines(kiln(root, "inspect", "--format", "{{.Id}}", "app:1")) == [img.id[7:]]
    assert lines(kiln(root, "image", "inspect", "--format", "{{.Os}}", "app:1")) == ["linux"]
    res = kiln(root, "history", "app:1")
    table = lines(res)
    assert table[0].split() == ["ID", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert table[1].startswith(img.id[7:19]) and "ADD b" in table[1]
    assert table[2].startswith("<missing>") and "ADD a" in table[2]
    assert lines(kiln(root, "history", "-q", "app:1")) == [img.id[7:19], "<missing>"]
    hist = json.loads(kiln(root, "history", "--format", "json", "app:1").stdout)
    assert [h["CreatedBy"] for h in hist] == ["ADD b", "ADD a"]
    res = kiln(root, "history", "--human=false", "app:1")
    assert lines(res)[1].split()[-1] in ("10240",) or "10240" in lines(res)[1]


def test_errors_are_one_line_and_exit_125(root, store):
    res = kiln(root, "inspect", "nope")
    assert res.exit_code == 125
    assert res.stderr == 'Error: inspecting object: no such object: "nope"\n'
    res = kiln(root, "history", "nope")
    assert (res.exit_code, res.stderr) == (125, "Error: nope: image not known\n")
    res = kiln(root, "tag", "only-one-arg")
    assert res.exit_code == 125 and res.stderr.startswith("Error: ")
    assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1
    res = kiln(root, "images", "--filter", "colour=red")
    assert res.exit_code == 125 and 'unsupported image filter "colour"' in res.stderr
    res = kiln(root, "nosuchverb")
    assert res.exit_code == 125 and "unrecognized command" in res.stderr


def test_image_exists_is_silent(root, store):
    make_image(store, ["a"], ["x:1"])
    res = kiln(root, "image", "exists", "x:1")
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "")
    res = kiln(root, "image", "exists", "x:2")
    assert (res.exit_code, res.stdout, res.stderr) == (1, "", "")


def test_rmi_output_and_exit_codes(root, store):
    img = make_image(store, ["a"], ["a:1", "a:2"])
    res = kiln(root, "rmi", "a:1")
    assert (res.exit_code, lines(res)) == (0, ["Untagged: docker.io/library/a:1"])
    res = kiln(root, "rmi", "nothere")
    assert (res.exit_code, res.stderr) == (1, "Error: nothere: image not known\n")
    used = make_image(store, ["u"], ["used:1"])
    cid = add_container(store, used.id)
    res = kiln(root, "rmi", "used:1")
    assert res.exit_code == 2
    assert res.stderr == (
        f"Error: image used by {cid}: image is in use by a container: "
        "consider listing external containers and force-removing image\n"
    )
    res = kiln(root, "rmi", "a:2")
    assert lines(res) == ["Untagged: docker.io/library/a:2", f"Deleted: {img.id[7:]}"]
    res = kiln(root, "rmi", "-f", "used:1")
    assert res.exit_code == 0 and f"Deleted: {used.id[7:]}" in lines(res)
    make_image(store, ["z"], ["z:1"])
    res = kiln(root, "rmi", "--all")
    assert res.exit_code == 0 and len([x for x in lines(res) if x.startswith("Deleted:")]) == 1
    assert lines(kiln(root, "images", "-q")) == []


def test_untag_and_prune(root, store):
    img = make_image(store, ["a"], ["a:1", "b:1"])
    assert kiln(root, "untag", "a:1", "b:1").exit_code == 0
    assert store.names_of(img.id) == ["docker.io/library/a:1"]
    assert kiln(root, "untag", img.id).exit_code == 0
    res = kiln(root, "image", "prune", "-f")
    assert lines(res) == [img.id[7:]]
    res = kiln(root, "image", "prune", input="n\n")
    assert "WARNING! This command removes all dangling images." in res.stderr
    keep = make_image(store, ["k"], ["k:1"])
    kiln(root, "image", "prune", "-a", input="y\n")
    assert not any(r.id == keep.id for r in store.list_images())


@pytest.mark.parametrize("verb", [("image", "prune"), ("system", "prune"), ("builder", "prune")])
def test_a_prune_with_no_answer_on_stdin_fails_as_podman_s(root, store, verb):
    # a script that forgot -f (stdin at its end) must not read as a prune done: podman says
    # "Error: EOF" and exits 125
    make_image(store, ["d"], [])  # dangling
    res = CliRunner().invoke(cli, ["--root", root, *verb], input="")
    assert res.exit_code == 125 and res.stderr.endswith(
        "Error: no answer on standard input: give -f to prune without asking\n"
    )
    assert len(store.list_images()) == 1


def test_import_save_load_through_the_cli(root, tmp_path, busybox_rootfs_tar):
    res = kiln(root, "import", "-c", "CMD /bin/sh", "-m", "hi", busybox_rootfs_tar, "bb:1")
    assert res.exit_code == 0
    image_id = res.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    out = str(tmp_path / "bb.tar")
    assert kiln(root, "save", "-o", out, "bb:1").exit_code == 0
    other = str(tmp_path / "other")
    res = kiln(other, "load", "-i", out)
    assert (res.exit_code, lines(res)) == (0, ["Loaded image: localhost/bb:1"])
    with open(out, "rb") as f:
        res = kiln(str(tmp_path / "third"), "load", input=f.read())
    assert lines(res) == ["Loaded image: localhost/bb:1"]
    res = kiln(other, "images", "--format", "{{.ID}}", "--no-trunc")
    assert lines(res) == [image_id]


def test_an_image_without_labels_shows_them_as_podman_s_nil_map(root, store):
    make_image(store, ["a"], ["plain:1"])
    res = kiln(root, "images", "--format", "{{json .Labels}}|{{.Labels}}|{{len .Labels}}")
    assert lines(res) == ["null|map[]|0"]
    res = kiln(root, "images", "--format", "{{.Repository}} {{json .}}|{{.Labels.version}}")
    assert res.exit_code == 0, res.output
    repo, _, rest = lines(res)[0].partition(" ")
    row, _, version = rest.rpartition("|")
    assert (repo, json.loads(row)["Labels"], version) == (
        "docker.io/library/plain",
        None,
        "<no value>",
    )
