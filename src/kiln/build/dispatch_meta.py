"""Metadata instructions: they edit the image config and add an ``empty_layer`` history entry.

ENV, ARG, LABEL, EXPOSE, VOLUME, WORKDIR, USER, STOPSIGNAL, CMD, ENTRYPOINT (which resets
an inherited CMD), HEALTHCHECK, SHELL, ONBUILD and MAINTAINER.
"""

from __future__ import annotations

import posixpath

from kiln.build.history import created_by
from kiln.build.instructions import (
    Arg,
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from kiln.build.stage_run import StageRun
from kiln.errors import InvalidArgument
from kiln.oci import Healthcheck as ConfigHealthcheck
from kiln.oci.strict_json import MAX_CONFIG_BYTES

__all__ = ["dispatch_meta"]


def dispatch_meta(run: StageRun, instr: Instruction) -> None:
    ed = run.editor
    shell = ed.shell()
    if isinstance(instr, Arg):
        with run.at_line(instr):
            run.args.apply(instr, run.lex, run.config_env)
        _check_growth(run, instr)
        names = [name for name, _ in instr.args]
        values = {n: run.args.declared.get(n) or "" for n in names}
        # buildah lists the args declared in the stage so far that have a value: a bare
        # `ARG A` that nothing gives a value is left out ("ARG " when none has one)
        history = created_by(instr, build_args=run.args.values())
        run.meta_step(instr, history, args={f"arg:{k}": v for k, v in values.items()})
        return
    expanded, used = run.expand(instr)
    if isinstance(expanded, Env):
        for key, value in expanded.pairs:
            run.set_env(key, value)
    elif isinstance(expanded, Label):
        for key, value in expanded.pairs:
            ed.set_label(key, value, empty_name_ok=True)
    elif isinstance(expanded, Expose):
        for port in expanded.ports:
            ed.add_port(port)
    elif isinstance(expanded, Volume):
        for path in expanded.paths:
            ed.add_volume(path)
            where = posixpath.normpath(posixpath.join("/", path))
            run.want_dir(where, "", volume=True, line=expanded.line)
    elif isinstance(expanded, Workdir):
        # as buildah and BuildKit: an absolute path is kept as written (``/w/`` stays), a
        # relative one is joined to the current directory and cleaned
        path = expanded.value
        if not path.startswith("/"):
            path = posixpath.normpath(posixpath.join("/", ed.runtime.working_dir or "/", path))
        ed.set_working_dir(path)
        run.want_dir(
            posixpath.normpath(path), ed.runtime.user or "", volume=False, line=expanded.line
        )
    elif isinstance(expanded, User):
        ed.set_user(expanded.value)
    elif isinstance(expanded, StopSignal):
        ed.set_stop_signal(expanded.value)
    elif isinstance(expanded, Cmd):
        run.set_cmd(_command(expanded.command, expanded.prepend_shell, shell))
    elif isinstance(expanded, Entrypoint):
        run.set_entrypoint(_command(expanded.command, expanded.prepend_shell, shell))
    elif isinstance(expanded, Healthcheck):
        ed.set_healthcheck(_healthcheck(expanded, ed.runtime.healthcheck))
    elif isinstance(expanded, Shell):
        ed.set_shell(list(expanded.shell))
    elif isinstance(expanded, Maintainer):
        ed.set_author(expanded.maintainer)
    elif isinstance(expanded, Onbuild):
        ed.add_onbuild(expanded.expression)
    else:
        raise InvalidArgument(f"line {instr.line}: {instr.name} is not a metadata instruction")
    if isinstance(expanded, Env | Label | Volume):
        _check_growth(run, instr)
    run.meta_step(expanded, created_by(instr), args=used)


def _check_growth(run: StageRun, instr: Instruction) -> None:
    """The stage's ARG values, ENV, labels and volumes together stay within the image
    config's size limit. One expansion is capped (``kiln.build.lexer``), but 4,000
    ``ENV eN=$big`` of a megabyte each were gigabytes of memory and minutes of copying
    before the commit refused the config; this refuses the line that crosses the limit."""
    rt = run.editor.runtime
    size = sum(map(len, rt.env)) + sum(map(len, rt.volumes))
    size += sum(len(k) + len(v) for k, v in rt.labels.items())
    size += sum(len(k) + len(v) for k, v in run.args.declared.items() if v)
    if size > MAX_CONFIG_BYTES:
        with run.at_line(instr):
            raise InvalidArgument(
                f"{instr.name}: the stage's build arguments, environment, labels and volumes"
                f" add up to {size} characters, over the image config's limit of"
                f" {MAX_CONFIG_BYTES} bytes"
            )


def _command(words: tuple[str, ...], shell_form: bool, shell: tuple[str, ...]) -> list[str]:
    if shell_form:
        return [*shell, " ".join(words)]
    return list(words)


def _healthcheck(instr: Healthcheck, base: ConfigHealthcheck | None) -> ConfigHealthcheck:
    if instr.test == ("NONE",):
        return ConfigHealthcheck(test=("NONE",))
    return ConfigHealthcheck(
        test=instr.test,
        interval=instr.interval,
        timeout=instr.timeout,
        start_period=instr.start_period,
        start_interval=instr.start_interval,
        retries=instr.retries,
    )
