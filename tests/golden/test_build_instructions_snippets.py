"""Dockerfile snippets -> typed instructions (kiln.build.parser + kiln.build.instructions)."""

from __future__ import annotations

import pytest

from kiln.build.heredoc import Heredoc
from kiln.build.instructions import (
    MAX_EXCLUDES,
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    instructions_from_nodes,
)  # fmt: skip
from kiln.build.lexer import ShellLex
from kiln.build.parser import parse_string
from kiln.errors import InvalidArgument


def one(text: str):
    parsed = parse_string("FROM scratch\n" + text)
    instrs = instructions_from_nodes(parsed.nodes)
    assert len(instrs) == 2, instrs
    return instrs[1]


def err(text: str) -> str:
    with pytest.raises(InvalidArgument) as info:
        instructions_from_nodes(parse_string(text).nodes)
    return str(info.value)


# -- FROM ---------------------------------------------------------------------


def test_from_plain() -> None:
    instr = instructions_from_nodes(parse_string("FROM busybox:1.36").nodes)[0]
    assert instr == From(1, "FROM busybox:1.36", "busybox:1.36")


def test_from_as_name_is_lowercased() -> None:
    instr = instructions_from_nodes(parse_string("from alpine as Builder").nodes)[0]
    assert isinstance(instr, From) and instr.stage_name == "builder"


def test_from_platform_flag() -> None:
    instr = instructions_from_nodes(parse_string("FROM --platform=linux/arm64 a AS b").nodes)[0]
    assert isinstance(instr, From) and instr.platform == "linux/arm64"


def test_from_invalid_stage_name() -> None:
    assert err("FROM a AS 1abc") == (
        'Dockerfile:1: invalid name for build stage: "1abc", '
        "name can't start with a number or contain symbols"
    )


def test_from_wrong_argument_count() -> None:
    assert err("FROM a b") == "Dockerfile:1: FROM requires either one or three arguments"


def test_from_expand_uses_args() -> None:
    instr = instructions_from_nodes(parse_string("FROM ${IMG:-busybox}:$TAG").nodes)[0]
    expanded, used = instr.expand(ShellLex(), {"TAG": "1.36"})
    assert isinstance(expanded, From) and expanded.base == "busybox:1.36"
    assert used == {"TAG"}


# -- RUN ----------------------------------------------------------------------


def test_run_shell_form() -> None:
    instr = one("RUN echo hello  world")
    assert isinstance(instr, Run)
    assert instr.command == ("echo hello  world",) and instr.prepend_shell


def test_run_json_form() -> None:
    instr = one('RUN ["echo", "a b"]')
    assert isinstance(instr, Run) and instr.command == ("echo", "a b") and not instr.prepend_shell


def test_run_continuation_and_comment_lines() -> None:
    instr = one("RUN echo a \\\n# a comment inside\n    && echo b\n")
    assert isinstance(instr, Run)
    assert "&& echo b" in instr.command[0] and "comment" not in instr.command[0]
    assert (instr.line, instr.original.startswith("RUN echo a")) == (2, True)


def test_run_is_not_expanded() -> None:
    instr = one("RUN echo $HOME")
    expanded, used = instr.expand(ShellLex(), {"HOME": "/root"})
    assert expanded == instr and used == set()


def test_run_mount_cache() -> None:
    instr = one("RUN --mount=type=cache,target=/root/.cache,sharing=locked,id=pip x")
    assert isinstance(instr, Run)
    (mount,) = instr.mounts
    assert (mount.type, mount.target, mount.sharing, mount.id) == (
        "cache", "/root/.cache", "locked", "pip",
    )  # fmt: skip
    assert mount.readonly is False and mount.mode == 0o755


def test_run_mount_bind_defaults_readonly_and_rw() -> None:
    instr = one("RUN --mount=target=/src --mount=type=bind,src=a,dst=/b,from=build,rw x")
    assert isinstance(instr, Run)
    first, second = instr.mounts
    assert first.type == "bind" and first.readonly
    assert (second.source, second.target, second.from_, second.readonly) == (
        "a", "/b", "build", False,
    )  # fmt: skip


def test_run_mount_secret_ssh_tmpfs() -> None:
    instr = one(
        "RUN --mount=type=secret,id=tok,required=true,env=TOKEN --mount=type=ssh "
        "--mount=type=tmpfs,target=/t,size=64m x"
    )
    assert isinstance(instr, Run)
    secret, ssh, tmpfs = instr.mounts
    assert (secret.id, secret.required, secret.env, secret.mode) == ("tok", True, "TOKEN", 0o400)
    assert (ssh.type, ssh.id) == ("ssh", "default")
    assert (tmpfs.target, tmpfs.size) == ("/t", 64 * 1024 * 1024)


def test_run_mount_secret_default_target() -> None:
    instr = one("RUN --mount=type=secret,id=npmrc,uid=1000,gid=1000,mode=0440 x")
    assert isinstance(instr, Run)
    (mount,) = instr.mounts
    assert (mount.target, mount.uid, mount.gid, mount.mode) == (
        "/run/secrets/npmrc", 1000, 1000, 0o440,
    )  # fmt: skip


def test_run_mount_values_are_expanded() -> None:
    instr = one("RUN --mount=type=cache,target=$DIR,uid=$U x")
    expanded, used = instr.expand(ShellLex(), {"DIR": "/c", "U": "7"})
    assert isinstance(expanded, Run)
    assert (expanded.mounts[0].target, expanded.mounts[0].uid) == ("/c", 7)
    assert used == {"DIR", "U"}


def test_run_mount_bad_type_and_key() -> None:
    assert err("FROM a\nRUN --mount=type=nfs,target=/x y") == (
        "Dockerfile:2: unsupported mount type 'nfs'"
    )
    assert "unexpected key 'colour'" in err("FROM a\nRUN --mount=target=/x,colour=red y")
    assert "requires a target" in err("FROM a\nRUN --mount=type=cache y")


def test_run_network_and_security() -> None:
    instr = one("RUN --network=none --security=insecure x")
    assert isinstance(instr, Run) and (instr.network, instr.security) == ("none", "insecure")
    assert err("FROM a\nRUN --network=bridge x") == (
        "Dockerfile:2: unsupported network mode 'bridge'"
    )


def test_run_unknown_flag() -> None:
    assert err("FROM a\n\nRUN --foo=bar x") == "Dockerfile:3: unknown flag: --foo"


def test_run_heredoc() -> None:
    instr = one("RUN <<EOF\necho $HOME\nEOF\n")
    assert isinstance(instr, Run)
    assert instr.heredocs == (Heredoc("EOF", "echo $HOME\n", expand=True, chomp=False),)
    assert instr.command == ("<<EOF",)


def test_run_heredoc_chomp_and_quoted() -> None:
    instr = one('RUN <<-"EOT" bash\n\techo $X\n\t\tnested\n\tEOT\n')
    assert isinstance(instr, Run)
    (doc,) = instr.heredocs
    assert (doc.name, doc.body, doc.expand, doc.chomp) == ("EOT", "echo $X\nnested\n", False, True)


def test_run_several_heredocs_on_one_line() -> None:
    instr = one("RUN <<A cat - 3<<'B'\nfirst\nA\nsecond\nB\n")
    assert isinstance(instr, Run)
    first, second = instr.heredocs
    assert (first.name, first.body, first.fd, first.expand) == ("A", "first\n", 0, True)
    assert (second.name, second.body, second.fd, second.expand) == ("B", "second\n", 3, False)


def test_unterminated_heredoc_names_line() -> None:
    assert err("FROM a\nRUN true\nRUN <<EOF\nabc\n") == "Dockerfile:3: unterminated heredoc"


# -- CMD / ENTRYPOINT / SHELL -----------------------------------------------------


def test_cmd_shell_and_json() -> None:
    assert one("CMD echo hi") == Cmd(2, "CMD echo hi", ("echo hi",), True)
    assert one('CMD ["a", "b"]') == Cmd(2, 'CMD ["a", "b"]', ("a", "b"), False)


def test_cmd_bad_json_falls_back_to_shell_form() -> None:
    instr = one('CMD ["a", b')
    assert isinstance(instr, Cmd) and instr.prepend_shell and instr.command == ('["a", b',)


def test_entrypoint_json() -> None:
    instr = one('ENTRYPOINT ["/bin/sh", "-c"]')
    assert instr == Entrypoint(2, 'ENTRYPOINT ["/bin/sh", "-c"]', ("/bin/sh", "-c"), False)


def test_shell_requires_json() -> None:
    assert one('SHELL ["/bin/bash", "-eo", "pipefail", "-c"]') == Shell(
        2, 'SHELL ["/bin/bash", "-eo", "pipefail", "-c"]', ("/bin/bash", "-eo", "pipefail", "-c")
    )
    assert err("FROM a\nSHELL /bin/bash") == (
        "Dockerfile:2: SHELL requires the arguments to be in JSON form"
    )


# -- COPY / ADD -------------------------------------------------------------------


def test_copy_flags() -> None:
    instr = one(
        "COPY --from=build --chown=app:app --chmod=0640 --link --parents "
        "--exclude=*.md --exclude=tmp a b /dst/"
    )
    assert isinstance(instr, Copy)
    assert (instr.sources, instr.dest, instr.from_) == (("a", "b"), "/dst/", "build")
    assert (instr.chown, instr.chmod, instr.link, instr.parents) == ("app:app", "0640", True, True)
    assert instr.excludes == ("*.md", "tmp")


def test_copy_and_add_take_a_bounded_number_of_excludes() -> None:
    """Each pattern is matched against every path a copy walks: more than MAX_EXCLUDES on
    one instruction is refused when the Dockerfile is read, before any work."""
    many = "--exclude=x " * MAX_EXCLUDES
    assert len(one(f"COPY {many} a /d/").excludes) == MAX_EXCLUDES
    for name in ("COPY", "ADD", "COPY --from=b"):
        assert err(f"FROM a\n{name} {many}--exclude=y a /d/") == (
            f"Dockerfile:2: {MAX_EXCLUDES + 1} --exclude patterns; at most {MAX_EXCLUDES} are "
            "taken: exclude a directory, or use ** (--exclude=**/*.log)"
        )


def test_copy_json_form_with_spaces() -> None:
    instr = one('COPY ["my file", "/dest dir/"]')
    assert isinstance(instr, Copy) and instr.sources == ("my file",) and instr.dest == "/dest dir/"


def test_copy_requires_two_arguments() -> None:
    assert err("FROM a\nCOPY onlyone") == "Dockerfile:2: COPY requires at least two arguments"


def test_copy_bad_chmod() -> None:
    assert "invalid chmod parameter: 999" in err("FROM a\nCOPY --chmod=999 a b")


def test_copy_duplicate_flag() -> None:
    assert err("FROM a\nCOPY --from=a --from=b x y") == (
        "Dockerfile:2: duplicate flag specified: --from"
    )


def test_copy_heredoc_source() -> None:
    instr = one("COPY <<EOF /etc/motd\nhello $NAME\nEOF\n")
    assert isinstance(instr, Copy)
    assert instr.sources == () and instr.dest == "/etc/motd"
    expanded, used = instr.expand(ShellLex(), {"NAME": "kiln"})
    assert isinstance(expanded, Copy)
    assert expanded.contents[0].body == "hello kiln\n" and used == {"NAME"}


def test_copy_expansion() -> None:
    instr = one("COPY --from=$STAGE --chown=$U ${SRC}/ $DEST")
    env = {"STAGE": "build", "U": "1000", "SRC": "app", "DEST": "/srv"}
    expanded, used = instr.expand(ShellLex(), env)
    assert isinstance(expanded, Copy)
    assert (expanded.from_, expanded.chown, expanded.sources, expanded.dest) == (
        "build", "1000", ("app/",), "/srv",
    )  # fmt: skip
    assert used == set(env)


def test_add_flags() -> None:
    instr = one("ADD --checksum=sha256:abc --keep-git-dir=true --chown=1 https://x/r.git /src")
    assert isinstance(instr, Add)
    assert (instr.checksum, instr.keep_git_dir, instr.chown) == ("sha256:abc", True, "1")


def test_add_does_not_take_from() -> None:
    assert err("FROM a\nADD --from=x a b") == "Dockerfile:2: unknown flag: --from"


def test_bool_flag_value_checked() -> None:
    assert err("FROM a\nCOPY --link=maybe a b") == (
        "Dockerfile:2: expecting boolean value for flag --link, not: maybe"
    )


# -- ENV / LABEL / ARG ------------------------------------------------------------


def test_env_key_value_form_and_expansion() -> None:
    instr = one('ENV A=1 B="two words" C=${X:-d}')
    expanded, _ = instr.expand(ShellLex(), {})
    assert isinstance(expanded, Env)
    assert expanded.pairs == (("A", "1"), ("B", "two words"), ("C", "d"))


def test_env_legacy_form() -> None:
    instr = one("ENV GREETING hello world")
    assert instr == Env(2, "ENV GREETING hello world", (("GREETING", "hello world"),))


def test_env_uses_env_before_the_instruction() -> None:
    instr = one("ENV abc=bye def=$abc")
    expanded, _ = instr.expand(ShellLex(), {"abc": "hello"})
    assert isinstance(expanded, Env) and expanded.pairs == (("abc", "bye"), ("def", "hello"))


def test_env_requires_arguments() -> None:
    assert err("FROM a\nENV") == "Dockerfile:2: ENV requires at least one argument"


def test_label_pairs_with_quotes() -> None:
    instr = one('LABEL "com.example.vendor"="ACME Inc" version=1.0')
    expanded, _ = instr.expand(ShellLex(), {})
    assert isinstance(expanded, Label)
    assert expanded.pairs == (("com.example.vendor", "ACME Inc"), ("version", "1.0"))


def test_arg_forms() -> None:
    instr = one("ARG A=1 B")
    assert instr == Arg(2, "ARG A=1 B", (("A", "1"), ("B", None)))
    expanded, used = one("ARG C=${A}x").expand(ShellLex(), {"A": "a"})
    assert isinstance(expanded, Arg) and expanded.args == (("C", "ax"),) and used == {"A"}


# -- the rest -----------------------------------------------------------------------


def test_expose_expands_and_splits() -> None:
    instr = one("EXPOSE 80 53/udp $MORE")
    expanded, used = instr.expand(ShellLex(), {"MORE": "8080 9000-9001/tcp"})
    assert isinstance(expanded, Expose)
    assert expanded.ports == ("80/tcp", "53/udp", "8080/tcp", "9000-9001/tcp")
    assert used == {"MORE"}


def test_expose_keeps_the_protocol_as_written() -> None:
    # buildah keeps 80/TCP as written (BuildKit lowercases it; see the differential case
    # expose_uppercase_proto)
    expanded, _ = one("EXPOSE 80/TCP 53/Udp 81").expand(ShellLex(), {})
    assert expanded.ports == ("80/TCP", "53/Udp", "81/tcp")


def test_expose_invalid_proto() -> None:
    with pytest.raises(InvalidArgument, match="invalid proto: xyz"):
        one("EXPOSE 80/xyz").expand(ShellLex(), {})


def test_volume_forms() -> None:
    assert one('VOLUME ["/a", "/b"]') == Volume(2, 'VOLUME ["/a", "/b"]', ("/a", "/b"))
    assert one("VOLUME /c /d") == Volume(2, "VOLUME /c /d", ("/c", "/d"))


def test_workdir_user_stopsignal_expand() -> None:
    env = {"D": "/app", "U": "nobody", "S": "SIGQUIT"}
    for text, cls, value in (
        ("WORKDIR $D/src", Workdir, "/app/src"),
        ("USER ${U}:${U}", User, "nobody:nobody"),
        ("STOPSIGNAL $S", StopSignal, "SIGQUIT"),
    ):
        expanded, _ = one(text).expand(ShellLex(), env)
        assert isinstance(expanded, cls) and expanded.value == value


def test_maintainer() -> None:
    assert one("MAINTAINER Jane <j@example.com>") == Maintainer(
        2, "MAINTAINER Jane <j@example.com>", "Jane <j@example.com>"
    )


def test_healthcheck_full() -> None:
    instr = one(
        "HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --start-interval=500ms "
        "--retries=4 CMD curl -f http://localhost/"
    )
    assert isinstance(instr, Healthcheck)
    assert instr.test == ("CMD-SHELL", "curl -f http://localhost/")
    assert (instr.interval, instr.timeout, instr.start_period, instr.start_interval) == (
        30 * 10**9, 3 * 10**9, 60 * 10**9, 5 * 10**8,
    )  # fmt: skip
    assert instr.retries == 4


def test_healthcheck_json_and_none() -> None:
    instr = one('HEALTHCHECK CMD ["/bin/check", "-q"]')
    assert isinstance(instr, Healthcheck) and instr.test == ("CMD", "/bin/check", "-q")
    assert one("HEALTHCHECK NONE") == Healthcheck(2, "HEALTHCHECK NONE", ("NONE",))
    assert "Unknown type" in err("FROM a\nHEALTHCHECK RUN x")
    assert "cannot be less than 1ms" in err("FROM a\nHEALTHCHECK --interval=1ns CMD x")


def test_onbuild_wraps_instruction_with_flags() -> None:
    instr = one("ONBUILD COPY --from=assets a /b")
    assert isinstance(instr, Onbuild)
    assert instr.expression == "COPY --from=assets a /b"
    assert isinstance(instr.trigger, Copy) and instr.trigger.from_ == "assets"


def test_onbuild_refusals() -> None:
    assert "Chaining ONBUILD" in err("FROM a\nONBUILD ONBUILD RUN x")
    assert err("FROM a\nONBUILD FROM b") == (
        "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"
    )
    assert "MAINTAINER isn't allowed" in err("FROM a\nONBUILD MAINTAINER x")


# -- parser-level behaviour ---------------------------------------------------------


def test_unknown_instruction() -> None:
    with pytest.raises(InvalidArgument, match=r"^Dockerfile:3: unknown instruction: FOO$"):
        parse_string("FROM a\nRUN x\nfoo bar\n")


def test_empty_dockerfile() -> None:
    for text in ("", "\n\n", "# just a comment\n"):
        with pytest.raises(InvalidArgument, match="^the Dockerfile has no instructions$"):
            parse_string(text)


def test_directives_recorded() -> None:
    parsed = parse_string("# syntax=docker/dockerfile:1.7\n# check=skip=all\nFROM a\n")
    assert parsed.syntax == "docker/dockerfile:1.7"
    assert parsed.directives == {"syntax": "docker/dockerfile:1.7", "check": "skip=all"}


def test_directive_after_comment_is_ignored() -> None:
    parsed = parse_string("# hello\n# escape=`\nFROM a\n")
    assert parsed.escape == "\\" and parsed.directives == {}


def test_escape_directive_backtick() -> None:
    parsed = parse_string("# escape=`\nFROM a\nRUN dir C:\\ `\n  && echo done\n")
    assert parsed.escape == "`"
    run = instructions_from_nodes(parsed.nodes)[1]
    assert isinstance(run, Run) and run.command[0].startswith("dir C:\\ ")
    assert run.command[0].endswith("&& echo done")


def test_duplicate_directive_refused() -> None:
    with pytest.raises(InvalidArgument, match="only one escape parser directive"):
        parse_string("# escape=`\n# escape=\\\nFROM a\n")


def test_lowercase_instructions_are_normalised() -> None:
    nodes = parse_string("from a\nrun echo x\n").nodes
    assert [n.instruction for n in nodes] == ["FROM", "RUN"]


def test_line_numbers_span_continuations() -> None:
    nodes = parse_string("FROM a\n\nRUN a \\\n  b \\\n  c\nCMD x\n").nodes
    assert [(n.line, n.end_line) for n in nodes] == [(1, 1), (3, 5), (6, 6)]
