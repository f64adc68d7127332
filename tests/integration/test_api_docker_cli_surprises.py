"""What a docker CLI user meets when DOCKER_HOST points at ``kiln serve``, compared with a
dockerd: the differences found by running the same commands against both, each fixed and
kept here with dockerd's answer (recorded in a comment, or compared live where cheap).

The client is Debian's docker.io (20.10), the one a Debian machine has; it still speaks
BuildKit's session protocol itself (a newer client hands BuildKit to buildx).
"""

from __future__ import annotations

import time

import pytest

from docker_cli_fixture import context as _context
from docker_cli_fixture import needs_debian_docker

pytest_plugins = ["docker_cli_fixture"]
pytestmark = needs_debian_docker


def test_a_buildkit_build_is_refused_with_what_to_do(kiln, tmp_path):
    """``DOCKER_BUILDKIT=1 docker build`` (set in many shells) names the way out at once.

    dockerd builds it. kiln has no BuildKit; before, the client's session dial
    (``POST /session``, a 404) failed first and the user read only ``failed to dial gRPC:
    unable to upgrade to h2c, received 404`` (podman 4.3's compat service says the same).
    Now the session is accepted and ended at once, so the build's refusal is the only
    error; the HTTP/2 bytes the client writes on it are neither parsed as a request
    (answering them printed ``http2: server: error reading preface ... bogus greeting``)
    nor reset (``connection reset by peer``)."""
    ctx = _context(tmp_path, "FROM base:1\nRUN echo hi > /hi\n")
    for flags in ((), ("-q",), ("--iidfile", str(tmp_path / "iid"))) * 3:  # each a race
        r = kiln("build", *flags, "-t", "bk:1", str(ctx), env_extra={"DOCKER_BUILDKIT": "1"},
                 check=False)  # fmt: skip
        err = r.stderr.decode()
        assert r.returncode == 1, (flags, err)
        assert "kiln serve has no BuildKit" in err and "DOCKER_BUILDKIT=0 docker build" in err
        assert "gRPC" not in err and "http2" not in err, err  # "bogus greeting", "reset by peer"
    assert not (tmp_path / "iid").exists()
    assert kiln("image", "inspect", "bk:1", check=False).returncode == 1
    server_log = (tmp_path / "server.err").read_text()
    assert "Unsupported upgrade" not in server_log and "WebSocket" not in server_log
    # the classic builder, as the message says, builds it
    kiln("build", "-q", "-t", "bk:1", str(ctx), env_extra={"DOCKER_BUILDKIT": "0"})
    kiln("image", "inspect", "bk:1")


def test_a_build_arg_named_without_a_value_leaves_the_dockerfile_default(kiln, tmp_path):
    """``docker build --build-arg FOO`` with no FOO in the client's environment: the CLI
    sends ``{"FOO": null}``, which dockerd reads as not given (the ARG's default stands,
    and the image is the one built without the flag). kiln made it FOO="", which wiped
    the default and added ``|1 FOO=`` to the RUN's history, a different image.

    dockerd 20.10, the same commands::

        Step 3/3 : RUN echo "foo=$FOO" > /foo && cat /foo
        foo=default
    """
    ctx = _context(
        tmp_path, 'FROM base:1\nARG FOO=default\nRUN echo "foo=$FOO" > /foo && cat /foo\n'
    )
    env = {"DOCKER_BUILDKIT": "0"}
    named = kiln("build", "--network", "none", "--build-arg", "FOO", "-t", "arg:1", str(ctx),
                 env_extra=env)  # fmt: skip
    assert "foo=default" in named.stdout.decode().splitlines()
    plain = kiln("build", "-q", "--network", "none", "-t", "arg:2", str(ctx), env_extra=env)
    inspect = kiln("image", "inspect", "-f", "{{.Id}}", "arg:1").stdout
    assert inspect.decode().strip() == plain.stdout.decode().strip()
    # from the client's environment, as before
    given = kiln("build", "--network", "none", "--build-arg", "FOO", "-t", "arg:3", str(ctx),
                 env_extra={**env, "FOO": "mine"})  # fmt: skip
    assert "foo=mine" in given.stdout.decode().splitlines()


def test_a_failed_run_exits_with_its_code_quiet_or_not(kiln, tmp_path):
    """``docker build`` of a RUN that exits 3 exits 3, as against dockerd, which sends the
    code in the stream's ``errorDetail`` (the CLI exits with it); kiln sent none, so the
    CLI exited 1, and a quiet build's failure was an HTTP 500 ('Error response from
    daemon: ...'), not the build's stream.

    dockerd 20.10, the same commands (``-q`` prints the steps to stderr, then)::

        The command '/bin/sh -c exit 3' returned a non-zero code: 3     (exit code 3)
    """
    ctx = _context(tmp_path, "FROM base:1\nRUN exit 3\n")
    for quiet in ((), ("-q",)):
        r = kiln("build", *quiet, "--network", "none", "-t", "fails:1", str(ctx),
                 env_extra={"DOCKER_BUILDKIT": "0"}, check=False)  # fmt: skip
        err = r.stderr.decode()
        assert r.returncode == 3, (quiet, r.returncode, err)
        assert 'building at STEP "RUN exit 3"' in err and "exit status 3" in err, err
        assert "Error response from daemon" not in err, err


def test_image_ls_before_or_since_an_unknown_image_says_no_such_image(kiln):
    """dockerd: ``Error response from daemon: No such image: nosuch:latest`` (with the
    default tag, as its other answers); kiln answered with the store's podman wording
    ``nosuch: image not known``."""
    for key, name, shown in (
        ("before", "nosuch:1", "nosuch:1"),
        ("since", "nosuch", "nosuch:latest"),
    ):
        r = kiln("image", "ls", "--filter", f"{key}={name}", check=False)
        assert r.returncode == 1
        assert r.stderr.decode().strip() == f"Error response from daemon: No such image: {shown}"


def test_events_show_and_filter_images_by_dockerd_s_names(kiln, tmp_path):
    """``docker events --filter image=app`` and ``{{.Actor.Attributes.name}}`` around a tag,
    a build and an rmi. kiln showed ``docker.io/library/ev:1``, a ``build`` action that
    ``event=tag`` did not see, a ``delete`` with no name, and ``image=ev``/``image=ev:1``
    matched nothing.

    dockerd 20.10, the same commands (``--format '{{.Action}} {{.Actor.Attributes.name}}'``)::

        type=image:  tag ev:1 / untag sha256:<id> / tag ev:2 / untag sha256:<id> / delete sha256:<id>
        image=ev:1:  tag ev:1
        image=ev:    tag ev:1 / tag ev:2
        event=tag:   tag ev:1 / tag ev:2
    """
    start = f"{time.time():.9f}"  # after the fixture's import
    image_id = kiln("image", "inspect", "-f", "{{.Id}}", "base:1").stdout.decode().strip()
    kiln("tag", "base:1", "ev:1")
    kiln("rmi", "ev:1")
    ctx = _context(tmp_path, "FROM base:1\nLABEL ev=2\n")
    built = kiln("build", "-q", "-t", "ev:2", str(ctx), env_extra={"DOCKER_BUILDKIT": "0"})
    built_id = built.stdout.decode().strip()
    kiln("rmi", "ev:2")
    until = str(int(time.time()) + 2)

    def events(filter_: str) -> list[str]:
        out = kiln("events", "--since", start, "--until", until, "--filter", filter_,
                   "--format", "{{.Action}} {{.Actor.Attributes.name}} {{.ID}}").stdout  # fmt: skip
        return out.decode().splitlines()

    assert events("type=image") == [
        f"tag ev:1 {image_id}",
        f"untag {image_id} {image_id}",
        f"tag ev:2 {built_id}",
        f"untag {built_id} {built_id}",
        f"delete {built_id} {built_id}",
    ]
    assert events("image=ev:1") == [f"tag ev:1 {image_id}"]
    assert [e for e in events("image=ev") if e.startswith("tag")] == [
        f"tag ev:1 {image_id}",
        f"tag ev:2 {built_id}",
    ]
    assert events("event=tag") == [f"tag ev:1 {image_id}", f"tag ev:2 {built_id}"]


def test_a_quiet_build_prints_the_image_id_alone_and_a_warning_once_worded(kiln, tmp_path):
    """``id=$(docker build -q --build-arg UNUSED=1 .)``: dockerd leaves its warnings out of a
    quiet build's stream, so stdout is the ID alone; kiln sent the warning too, which the
    CLI printed on stdout before the ID. Unquiet, the warning is dockerd's line; kiln
    prefixed it with a second ``WARNING:``.

    dockerd 20.10, the same commands::

        -q: sha256:<id>                  (stdout; stderr empty)
        [Warning] One or more build-args [UNUSED] were not consumed
    """
    ctx = _context(tmp_path, "FROM base:1\nLABEL q=1\n")
    env = {"DOCKER_BUILDKIT": "0"}
    quiet = kiln("build", "-q", "--build-arg", "UNUSED=1", str(ctx), env_extra=env)
    lines = quiet.stdout.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sha256:"), lines
    assert quiet.stderr == b""
    loud = kiln("build", "--build-arg", "UNUSED=1", str(ctx), env_extra=env).stdout.decode()
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in loud.splitlines(), loud


def test_a_quiet_build_that_fails_midway_shows_its_steps_and_error(kiln, tmp_path):
    """``docker build -q`` of a COPY whose source is missing: dockerd has started the
    build, so it answers 200 with the steps it kept back and the error (the CLI prints both
    on stderr; docker-py raises BuildError). kiln answered 404, which the CLI printed as
    'Error response from daemon' and docker-py raised as NotFound.

    dockerd 20.10, the same command (stderr, exit code 1)::

        Step 1/2 : FROM base:1
         ---> <id>
        Step 2/2 : COPY nope.txt /
        COPY failed: file not found in build context or excluded by .dockerignore: ...
    """
    docker_py = pytest.importorskip("docker")
    ctx = _context(tmp_path, "FROM base:1\nCOPY nope.txt /\n")
    r = kiln("build", "-q", str(ctx), env_extra={"DOCKER_BUILDKIT": "0"}, check=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b"", err
    assert "Error response from daemon" not in err, err
    assert "STEP 2/2: COPY nope.txt /" in err and "nope.txt" in err.splitlines()[-1], err
    client = docker_py.DockerClient(base_url=f"unix://{kiln.sock}", version="1.41")
    try:
        with pytest.raises(docker_py.errors.BuildError, match="nope.txt"):
            client.images.build(path=str(ctx), quiet=True)
    finally:
        client.close()


def test_a_from_image_on_a_registry_on_this_machine_is_pulled_over_http(
    kiln, tmp_path, registry_plain
):
    """``FROM 127.0.0.1:PORT/base:1`` not in the store: dockerd pulls it over plain HTTP
    (127.0.0.0/8 is an insecure registry to it, as for ``docker pull``), and so does kiln's
    ``docker pull``; kiln's build asked for HTTPS and failed with 'server gave HTTP
    response to HTTPS client'."""
    ref = f"{registry_plain.host}/docker-cli-from/base:1"
    kiln("tag", "base:1", ref)
    kiln("push", ref)
    kiln("rmi", ref)
    ctx = _context(tmp_path, f"FROM {ref}\nLABEL from=registry\n")
    for pull in ((), ("--pull",)):
        built = kiln("build", "-q", *pull, str(ctx), env_extra={"DOCKER_BUILDKIT": "0"})
        assert built.stdout.decode().startswith("sha256:")


def test_a_build_with_security_options_is_refused_not_silently_built(kiln, tmp_path):
    """``docker build --security-opt seccomp=unconfined``: dockerd refuses any security
    option on build ('The daemon on this platform does not support setting security
    options on build'); kiln built the image and ignored the option without a word."""
    ctx = _context(tmp_path, "FROM base:1\nRUN true\n")
    r = kiln("build", "-q", "--security-opt", "seccomp=unconfined", "-t", "sec:1", str(ctx),
             env_extra={"DOCKER_BUILDKIT": "0"}, check=False)  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode == 1 and "does not set security options" in err, err
    assert kiln("image", "inspect", "sec:1", check=False).returncode == 1


def test_docker_py_builds_with_a_dockerfile_from_outside_the_context(kiln, tmp_path):
    """docker-py's ``images.build(path=CTX, dockerfile=ABSOLUTE_PATH_ELSEWHERE)`` adds the
    file to the context under a random name and sends ``dockerfile`` twice, that name
    then the file's text; dockerd reads the first value and builds. kiln answered 400.
    And ``isolation=hyperv``: dockerd's 400 'Unsupported isolation'; kiln ignored it."""
    docker_py = pytest.importorskip("docker")
    ctx = _context(tmp_path, "FROM base:1\nLABEL from=context\n")
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text("FROM base:1\nLABEL from=outside\n")
    client = docker_py.DockerClient(base_url=f"unix://{kiln.sock}", version="1.41")
    try:
        image, _ = client.images.build(path=str(ctx), dockerfile=str(outside))
        assert image.labels == {"from": "outside"}
        with pytest.raises(docker_py.errors.APIError, match="isolation") as refused:
            client.images.build(path=str(ctx), isolation="hyperv")
        assert refused.value.status_code == 400
    finally:
        client.close()
