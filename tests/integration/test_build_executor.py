"""The build executor end to end (root, runc, busybox): each instruction family, stages,
history, failures and secrets. The 60-case Dockerfile suite lives elsewhere; these test
the executor's mechanics."""

from __future__ import annotations

import json

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import NotFound, ProcessFailed

pytestmark = ROOT_MARKS


def test_run_and_metadata_instructions(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    result = build_env.build(
        ctx,
        """\
FROM busybox
ARG GREETING=hello
ENV WHO=world NUM=1
RUN echo "$GREETING $WHO" > /greeting && echo ran
WORKDIR /srv/app
RUN pwd > /pwd
USER 1000:1000
LABEL org.example.a=b "with space"=yes
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
MAINTAINER someone
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo hi
""",
        tags=["meta"],
        image_format="docker",  # HEALTHCHECK, ONBUILD and SHELL are Docker-only fields
    )
    img = build_env.validate("meta")
    cfg = img.config.config
    assert result.names == ["localhost/meta:latest"]
    assert "ran" in build_env.output()
    assert cfg.env_dict()["WHO"] == "world" and "GREETING" not in cfg.env_dict()
    assert cfg.working_dir == "/srv/app"
    assert cfg.user == "1000:1000"
    assert cfg.labels == {"org.example.a": "b", "with space": "yes"}
    assert set(cfg.exposed_ports) == {"8080/tcp", "53/udp"}
    assert cfg.volumes == ("/data",)
    assert cfg.stop_signal == "SIGTERM"
    assert cfg.healthcheck.test == ("CMD", "true") and cfg.healthcheck.retries == 2
    assert cfg.healthcheck.interval == 5 * 10**9
    assert cfg.shell == ("/bin/sh", "-ec")
    assert cfg.on_build == ("RUN echo child",)
    assert img.config.author == "someone"
    assert cfg.entrypoint == ("/bin/sh", "-c")
    assert cfg.cmd == ("/bin/sh", "-ec", "echo hi")  # shell form uses SHELL
    files = build_env.files("meta")
    assert files["greeting"] == b"hello world\n"
    assert files["pwd"] == b"/srv/app\n"
    history = img.config.history
    assert len([h for h in history if not h.empty_layer]) == len(img.layers)
    by = [h.created_by for h in history]
    assert "/bin/sh -c #(nop) ENV WHO=world NUM=1" in by
    assert any(b.startswith('|1 GREETING=hello /bin/sh -c echo "$GREETING') for b in by)
    assert by[-1] == "/bin/sh -ec #(nop) CMD echo hi" or by[-1].endswith("CMD echo hi")


def test_a_label_whose_name_expands_to_nothing_is_named_empty(build_env):  # noqa: F811
    """``LABEL $UNSET=v``: buildah and BuildKit write a label named "" (the CLI's
    ``--label =v`` stays refused)."""
    ctx = build_env.context_dir()
    build_env.build(ctx, "FROM busybox\nLABEL $UNSET=v a=b\n", tags=["emptylabel"])
    assert build_env.validate("emptylabel").config.config.labels == {"": "v", "a": "b"}


def test_oci_format_drops_docker_only_fields_with_a_warning(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(ctx, 'FROM busybox\nSHELL ["/bin/sh", "-ec"]\nHEALTHCHECK NONE\n', tags=["o"])
    cfg = build_env.image("o").config.config
    assert cfg.shell == () and cfg.healthcheck is None
    assert any("SHELL is not supported for OCI" in w for w in build_env.messages("warning"))


def test_entrypoint_resets_inherited_cmd(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(ctx, 'FROM busybox\nENTRYPOINT ["/bin/echo"]\n', tags=["ep"])
    assert build_env.image("ep").config.config.cmd is None
    build_env.build(ctx, 'FROM busybox\nCMD ["x"]\nENTRYPOINT ["/bin/echo"]\n', tags=["ep2"])
    assert build_env.image("ep2").config.config.cmd == ("x",)


def test_copy_add_from_context_stage_and_heredoc(build_env, tmp_path):  # noqa: F811
    import tarfile

    ctx = build_env.context_dir(
        files={"a.txt": "A\n", "dir/b.txt": "B\n", "dir/skip.log": "no\n", "secret.key": "k"}
    )
    (tmp_path / "ctx" / ".dockerignore").write_text("*.key\n")
    with tarfile.open(tmp_path / "ctx" / "t.tar", "w") as tar:
        tar.add(tmp_path / "ctx" / "a.txt", arcname="from-tar.txt")
    build_env.build(
        ctx,
        """\
FROM busybox AS builder
RUN mkdir /out && echo built > /out/result
FROM busybox
COPY a.txt /app/
COPY --exclude=*.log dir /app/dir
COPY --chmod=600 --chown=1000:1000 a.txt /app/owned
COPY --from=builder /out/result /app/
COPY --from=0 /out/result /app/by-index
COPY <<EOF /app/inline.txt
inline $HOSTNAME_UNSET body
EOF
ADD t.tar /app/untarred/
COPY t.tar /app/kept.tar
COPY * /all/
""",
        tags=["copies"],
    )
    files = build_env.files("copies")
    build_env.validate("copies")
    assert files["app/a.txt"] == b"A\n"
    assert files["app/dir/b.txt"] == b"B\n"
    assert "app/dir/skip.log" not in files
    assert files["app/result"] == b"built\n" and files["app/by-index"] == b"built\n"
    assert files["app/inline.txt"] == b"inline  body\n"
    assert files["app/untarred/from-tar.txt"] == b"A\n"
    assert "app/kept.tar" in files
    assert "all/secret.key" not in files and "all/a.txt" in files
    img = build_env.image("copies")
    with img.open_layer(img.layers[3]) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        owned = [m for m in tar if m.name.endswith("owned")][0]
    assert (owned.mode & 0o7777, owned.uid, owned.gid) == (0o600, 1000, 1000)


def test_ignored_source_is_an_error_naming_the_line(build_env, tmp_path):  # noqa: F811
    ctx = build_env.context_dir(files={"secret.key": "k"})
    (tmp_path / "ctx" / ".dockerignore").write_text("secret.key\n")
    with pytest.raises(NotFound, match=r"Containerfile:2: COPY"):
        build_env.build(ctx, "FROM busybox\nCOPY secret.key /\n")


def test_failing_run_leaves_no_image_and_names_line_and_code(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    before = {r.id for r in build_env.store.list_images()}
    with pytest.raises(ProcessFailed) as info:
        build_env.build(ctx, 'FROM busybox\nRUN echo ok\nRUN sh -c "exit 7"\n', tags=["broken"])
    assert info.value.exit_code == 7
    assert "Containerfile:3" in str(info.value) and "exit status 7" in str(info.value)
    with pytest.raises(NotFound):
        build_env.store.resolve_image("localhost/broken:latest")
    after = {r.id for r in build_env.store.list_images()}
    assert len(after - before) == 1  # only the cached image of the good RUN
    assert build_env.store.list_containers() == []


def test_missing_base_image_uses_podman_wording(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with pytest.raises(
        NotFound, match="creating build container: nothere.invalid/x: image not known"
    ):
        build_env.build(ctx, "FROM nothere.invalid/x\n", pull="never")


def test_onbuild_triggers_run_in_child_build(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(
        ctx, "FROM busybox\nONBUILD RUN echo triggered > /trig\n", tags=["parent"],
        image_format="docker",
    )  # fmt: skip
    build_env.build(ctx, "FROM parent\nRUN cat /trig\n", tags=["child"])
    assert build_env.files("child")["trig"] == b"triggered\n"
    assert build_env.image("child").config.config.on_build == ()


def test_independent_stages_run_in_parallel(build_env, tmp_path):  # noqa: F811
    # each stage waits (up to 30 s) for the other's mark on a shared host volume: built one
    # after the other, the first would give up and fail; no wall-clock threshold involved
    shared = tmp_path / "shared"
    shared.mkdir()
    wait = (
        "touch /shared/{me}; i=0; while [ ! -e /shared/{other} ] && [ $i -lt {n} ]; "
        "do sleep 0.1; i=$((i+1)); done; test -e /shared/{other} && echo {me} > /{me}"
    )
    ctx = build_env.context_dir()
    build_env.build(
        ctx,
        f"""\
FROM busybox AS a
RUN {wait.format(me="a", other="b", n=300)}
FROM busybox AS b
RUN {wait.format(me="b", other="a", n=300)}
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
""",
        tags=["par"],
        volumes=[f"{shared}:/shared"],
    )
    files = build_env.files("par")
    assert files["a"] == b"a\n" and files["b"] == b"b\n"
    # the wait does fail when the other never comes (as it would, built one at a time)
    with pytest.raises(Exception, match="exit status"):
        build_env.build(ctx, f"FROM busybox\nRUN {wait.format(me='a', other='c', n=10)}\n",
                        volumes=[f"{shared}:/shared"])  # fmt: skip


def test_only_the_target_and_its_dependencies_build(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    build_env.build(
        ctx,
        "FROM busybox AS unused\nRUN exit 1\nFROM busybox AS used\nRUN echo used\n",
        target="used",
    )
    assert "used" in build_env.output()


def test_secrets_reach_run_but_no_layer_history_or_config(build_env, tmp_path):  # noqa: F811
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cr3t-value-123")
    ctx = build_env.context_dir()
    build_env.build(
        ctx,
        """\
FROM busybox
RUN --mount=type=secret,id=tok grep -q ^s3cr3t /run/secrets/tok && \\
    wc -c < /run/secrets/tok > /len
RUN --mount=type=secret,id=tok,env=TOKEN test ${#TOKEN} -eq 16 && echo $TOKEN | grep -q value
""",
        tags=["sec"],
        secrets=[f"id=tok,src={secret_file}"],
    )
    img = build_env.image("sec")
    blob = build_env.layer_bytes("sec")
    files = build_env.files("sec")
    assert files["len"].strip() == b"16"
    # the secret's mount point is not left (its parent /run/secrets is, as buildah and
    # BuildKit leave a mount target's parents)
    assert not any(name.startswith("run/secrets/") for name in files)
    assert b"s3cr3t-value-123" not in blob
    history = json.dumps([h.to_json() for h in img.config.history])
    assert "value-123" not in history and "value-123" not in img.config.to_bytes().decode()


def test_secret_file_is_not_left_in_layer(build_env, tmp_path):  # noqa: F811
    secret_file = tmp_path / "token"
    secret_file.write_text("only-in-the-mount-42")
    ctx = build_env.context_dir()
    build_env.build(
        ctx,
        "FROM busybox\nRUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok\n",
        tags=["sec2"],
        secrets=[f"id=tok,src={secret_file}"],
    )
    assert "only-in-the-mount-42" in build_env.output()
    assert b"only-in-the-mount-42" not in build_env.layer_bytes("sec2")
    assert not any(n.startswith("run/secrets/") for n in build_env.files("sec2"))


def test_cache_mount_outlives_builds(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    text = "FROM busybox\nRUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log\n"
    build_env.build(ctx, text, no_cache=True)
    build_env.build(ctx, text, no_cache=True)
    assert build_env.output().split()[-1] == "2"
