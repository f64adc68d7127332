"""`kiln build` / `kiln bud` as users run them: output lines, exit codes, flags."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS


def kiln(env, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ, KILN_ROOT=env.store.root)
    environ.pop("SOURCE_DATE_EPOCH", None)
    return subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", *args],
        input=stdin, capture_output=True, text=True, env=environ, timeout=300,
    )  # fmt: skip


def test_output_is_podman_shaped(build_env, tmp_path):  # noqa: F811
    ctx = build_env.context_dir(
        files={"Containerfile": "FROM busybox\nRUN echo hello\nLABEL a=b\n"}
    )
    proc = kiln(build_env, "build", "-t", "shaped", "--iidfile", str(tmp_path / "iid"), ctx)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "STEP 1/3: FROM busybox"
    assert lines[1] == "STEP 2/3: RUN echo hello"
    assert "hello" in lines
    assert re.fullmatch(r"--> [0-9a-f]{11}", lines[3])
    assert "STEP 3/3: LABEL a=b" in lines and "COMMIT shaped" in lines
    assert "Successfully tagged localhost/shaped:latest" in lines
    assert re.fullmatch(r"[0-9a-f]{64}", lines[-1])
    assert (tmp_path / "iid").read_text() == "sha256:" + lines[-1]
    again = kiln(build_env, "bud", "-q", "-t", "shaped", ctx)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [lines[-1]]


def test_failing_run_exit_code_and_message(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": 'FROM busybox\nRUN sh -c "exit 3"\n'})
    proc = kiln(build_env, "build", "-t", "bad", ctx)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1] == (
        'Error: building at STEP "RUN sh -c "exit 3"": while running runtime: exit status 3 '
        "(Containerfile:2)"
    )
    listing = kiln(build_env, "images", "--format", "{{.Repository}}")
    assert "localhost/bad" not in listing.stdout


def test_kiln_errors_exit_125(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\nFROOB x\n"})
    proc = kiln(build_env, "build", ctx)
    assert proc.returncode == 125
    assert "Containerfile:2" in proc.stderr and "FROOB" in proc.stderr


def test_dockerfile_from_stdin_and_json_progress(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    proc = kiln(
        build_env, "build", "--progress", "json", "-f", "-", "-t", "fromstdin", ctx,
        stdin="FROM busybox\nRUN echo via-stdin\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = {e["data"]["type"] for e in events}
    assert {"step", "run", "layer", "tagged", "image"} <= kinds
    assert events[-1]["data"]["type"] == "image"
    assert "via-stdin" in "".join(e["message"] for e in events if e["data"]["type"] == "run")


def test_source_date_epoch_gives_identical_ids(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\nRUN echo x > /x\n"})
    env = dict(os.environ, KILN_ROOT=build_env.store.root, SOURCE_DATE_EPOCH="1500000000")
    ids = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "kiln.cli.main", "build", "-q", "--no-cache", ctx],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        ids.append(proc.stdout.strip())
    assert ids[0] == ids[1]


def test_source_date_epoch_is_seen_by_arg_source_date_epoch(build_env, tmp_path):  # noqa: F811
    # as BuildKit: $SOURCE_DATE_EPOCH is the value of ARG SOURCE_DATE_EPOCH (and still the
    # image's timestamp); undeclared it is no unused --build-arg
    ctx = build_env.context_dir(
        files={
            "Containerfile": "FROM busybox\nARG SOURCE_DATE_EPOCH\nRUN echo sde=$SOURCE_DATE_EPOCH > /sde\n"
        }
    )
    environ = dict(os.environ, KILN_ROOT=build_env.store.root, SOURCE_DATE_EPOCH="1700000000")
    dest = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", "build", "-t", "sde", "-o", f"type=local,dest={dest}", ctx],
        capture_output=True, text=True, env=environ, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (dest / "sde").read_text() == "sde=1700000000\n"
    created = kiln(build_env, "inspect", "--type", "image", "--format", "{{.Created}}", "sde")
    assert created.stdout.strip() == "2023-11-14 22:13:20 +0000 UTC"  # Go's time, as podman
    other = build_env.context_dir(files={"Containerfile": "FROM busybox\nRUN true\n"})
    proc = subprocess.run(
        [sys.executable, "-m", "kiln.cli.main", "build", other],
        capture_output=True, text=True, env=environ, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not consumed" not in proc.stdout + proc.stderr


def test_no_cache_filter_reruns_those_stages_and_stores_them(build_env, tmp_path):  # noqa: F811
    dockerfile = (
        "FROM busybox AS one\nRUN cat /proc/sys/kernel/random/uuid > /one\n"
        "FROM busybox AS two\nRUN cat /proc/sys/kernel/random/uuid > /two\n"
        "FROM busybox\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n"
    )
    ctx = build_env.context_dir(files={"Containerfile": dockerfile})

    def build(*flags):
        dest = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        proc = kiln(build_env, "build", *flags, "-o", f"type=local,dest={dest}", ctx)
        assert proc.returncode == 0, proc.stderr
        return (dest / "one").read_text(), (dest / "two").read_text(), proc.stderr

    first = build()
    assert build()[:2] == first[:2]  # all from the cache
    refreshed = build("--no-cache-filter", "ONE")  # stage names match case-insensitively
    assert refreshed[0] != first[0] and refreshed[1] == first[1]
    # what the filtered stage built was stored: the next build takes it from the cache
    again = build("--no-cache-filter", "nosuch")
    assert again[:2] == refreshed[:2]
    assert "--no-cache-filter: no stage is named 'nosuch'" in again[2]


def test_output_local_and_tar(build_env, tmp_path):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\nRUN echo out > /out.txt\n"})
    dest = tmp_path / "exported"
    tar = tmp_path / "image.tar"
    proc = kiln(
        build_env, "build", "-q", "-o", f"type=local,dest={dest}", "-o", f"type=oci,dest={tar}",
        ctx,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (dest / "out.txt").read_text() == "out\n"
    assert tar.stat().st_size > 0


def test_output_local_replaces_an_earlier_export_and_never_writes_through_its_links(
    build_env,  # noqa: F811
    tmp_path,
):
    """A second export into the same directory works (busybox's links are replaced, not
    refused as existing), and a path that was a symbolic link in the first image and is a
    file in the second gets the file: the file the old link named is not written."""
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    dest = tmp_path / "exported"
    linked = build_env.context_dir(
        files={"Containerfile": f"FROM busybox\nRUN ln -s {victim} /x && ln -s /etc /d\n"}
    )
    filed = build_env.context_dir(
        files={"Containerfile": "FROM busybox\nRUN echo image > /x && mkdir /d\n"}
    )
    for ctx in (linked, filed):
        proc = kiln(build_env, "build", "-q", "-o", f"type=local,dest={dest}", ctx)
        assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "untouched\n"
    assert (dest / "x").read_text() == "image\n" and not (dest / "x").is_symlink()
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink()
    assert os.readlink(dest / "bin" / "sh") == "/bin/busybox"


def test_from_step_shows_the_expanded_base_as_buildah(build_env):  # noqa: F811
    dockerfile = (
        "ARG BASE=busybox\nARG P=linux/amd64\n"
        "from  --platform=$P  ${BASE}  as  builder\nARG SRC=a\nCOPY $SRC /x\n"
        "FROM builder AS two\nRUN true\n"
        "FROM ${BASE}:latest\nCOPY --from=two /x /y\n"
    )
    ctx = build_env.context_dir(files={"Containerfile": dockerfile, "a": "a\n"})
    proc = kiln(build_env, "build", "--jobs", "1", ctx)
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stdout.splitlines() if "STEP " in line]
    assert steps[0] == "[1/3] STEP 1/3: FROM busybox AS builder"
    assert steps[2] == "[1/3] STEP 3/3: COPY $SRC /x"  # only FROM is shown expanded
    first_id = next(line[4:] for line in proc.stdout.splitlines() if line.startswith("--> "))
    assert re.fullmatch(rf"\[2/3\] STEP 1/2: FROM {first_id}[0-9a-f]{{53}} AS two", steps[3])
    assert steps[5] == "[3/3] STEP 1/2: FROM busybox:latest"


def test_json_progress_reports_the_error_as_an_event(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\nRUN exit 3\n"})
    proc = kiln(build_env, "build", "--progress", "json", ctx)
    assert proc.returncode == 3
    message = (
        'building at STEP "RUN exit 3": while running runtime: exit status 3 (Containerfile:2)'
    )
    assert proc.stderr.strip().splitlines()[-1] == f"Error: {message}"
    last = json.loads(proc.stdout.splitlines()[-1])
    assert last == {"kind": "error", "message": message, "data": {"type": "error", "exit_code": 3}}
    bad = kiln(build_env, "build", "--progress", "json", "-q", "--platform", "a,b", ctx)
    assert bad.returncode == 125
    assert json.loads(bad.stdout)["data"] == {"type": "error", "exit_code": 125}


def test_a_dockerfile_of_only_from_gives_the_base_image(build_env):  # noqa: F811
    # buildah and BuildKit give the base's ID (not a copy with a new creation time)
    base = kiln(build_env, "inspect", "--format", "{{.Id}}", "busybox")
    assert base.returncode == 0, base.stderr
    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\n"})
    only_from = kiln(build_env, "build", "-q", "-t", "same", ctx)
    assert only_from.returncode == 0, only_from.stderr
    assert only_from.stdout.split()[-1] == base.stdout.strip().removeprefix("sha256:")
    tagged = kiln(build_env, "inspect", "--format", "{{.Id}}", "same")
    assert tagged.stdout == base.stdout
    labelled = kiln(build_env, "build", "-q", "--label", "a=b", ctx)
    assert labelled.returncode == 0, labelled.stderr
    assert labelled.stdout.split()[-1] != only_from.stdout.split()[-1]


def test_mistakes_in_files_a_build_is_given_are_named_before_it_starts(build_env, tmp_path):  # noqa: F811
    # as podman: a -f that is a directory, a --secret file that is not there (even if no RUN
    # uses it: a typo in its path is caught before a long build, not at its end)
    ctx = build_env.context_dir(files={"Containerfile": "FROM busybox\nRUN echo built\n"})
    proc = kiln(build_env, "build", "-f", ctx, ctx)
    assert proc.returncode == 125
    assert proc.stderr == f"Error: the Containerfile {ctx} is a directory: check -f\n"
    missing = str(tmp_path / "no-such-token")
    proc = kiln(build_env, "build", "--secret", f"id=tok,src={missing}", ctx)
    assert proc.returncode == 125 and "STEP" not in proc.stdout
    assert proc.stderr == f"Error: --secret id=tok: {missing}: no such file or directory\n"
