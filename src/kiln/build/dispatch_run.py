"""RUN: shell or exec form, heredocs, ``--mount``, ``--network``; output streamed live.

A RUN in a stage of another architecture (its image's ``architecture``) runs under QEMU
user emulation: ``kiln.runtime.binfmt.ensure_emulator`` registers the handler if need be,
and when none can be had the step fails saying which platform and how to enable it.
A native stage never looks at binfmt_misc.

The cache key covers the instruction, the build args the RUN sees, the content of
context paths bind-mounted into it and the images it mounts from; never secret values,
and of an ssh mount only its fields (id, target, mode...), never the agent or its keys.
A non-zero exit raises ``StepFailed`` naming the Dockerfile line and the exit code.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from kiln.build.history import created_by
from kiln.build.instructions import Run
from kiln.build.stage_run import StageRun, StepFailed
from kiln.errors import InvalidArgument, ProcessFailed, Unavailable
from kiln.oci.platform import Platform, normalize_arch
from kiln.util.lazy_pattern import lazy_pattern

if TYPE_CHECKING:
    from kiln.build.services import BuildServices
    from kiln.container import Builder

__all__ = ["dispatch_run", "run_argv"]

_LONE_HEREDOC = lazy_pattern(r"^\s*\d*<<-?\s*([\"']?)([^\s\"']+)\1\s*$")
PIPES_DIR = "/dev/pipes"


def run_argv(instr: Run, shell: tuple[str, ...]) -> tuple[list[str], str | None]:
    """The argv of a RUN, and the body of a ``#!`` heredoc script to mount (else None)."""
    if not instr.prepend_shell:
        return list(instr.command), None
    command = " ".join(instr.command)
    if not instr.heredocs:
        return [*shell, command], None
    lone = _LONE_HEREDOC().match(command)
    if lone and len(instr.heredocs) == 1 and lone.group(2) == instr.heredocs[0].name:
        body = instr.heredocs[0].body
        if body.startswith("#!"):
            return [f"{PIPES_DIR}/{instr.heredocs[0].name}"], body
        return [*shell, body], None
    text = command + "\n"
    for doc in instr.heredocs:
        body = doc.body if doc.body.endswith("\n") or not doc.body else doc.body + "\n"
        text += body + doc.name + "\n"
    return [*shell, text], None


def _check_entitlements(instr: Run, allowed: tuple[str, ...]) -> None:
    """A Dockerfile asks for host networking or an unconfined RUN; only the person
    running the build can grant it (``--allow``, as BuildKit's entitlements)."""
    wanted = []
    if instr.network == "host":
        wanted.append(("network.host", "RUN --network=host"))
    if instr.security == "insecure":
        wanted.append(("security.insecure", "RUN --security=insecure"))
    for entitlement, what in wanted:
        if entitlement not in allowed:
            raise InvalidArgument(
                f"{what} needs the {entitlement} entitlement: "
                f"build with --allow {entitlement} if you trust this Containerfile"
            )


def ensure_platform_runs(run: StageRun, step_text: str, where: str) -> None:
    """A foreign stage's RUN needs an emulator: one registered, or qemu-user-static's
    registered now; else an error naming the platform, the step and the fix."""
    # start-up: the emulator code only where a RUN runs (a cached build runs none)
    from kiln.runtime.binfmt import ensure_emulator, host_arch, needs_emulation

    image = run.editor.image
    arch, variant = normalize_arch(image.architecture or "", image.variant or "")
    if not arch or not needs_emulation(arch):
        return
    try:
        ensure_emulator(arch)
    except Unavailable as exc:
        plat = Platform(image.os or "linux", arch, variant)
        raise Unavailable(
            f'building at STEP "{step_text}" ({where}): RUN for {plat} on this linux/'
            f"{host_arch()} machine needs an emulator: {exc}"
        ) from None


def _script_dir(wanted: bool, tmpdir: str | None) -> contextlib.AbstractContextManager[str]:
    """A temporary directory for a heredoc script, only when there is one (most RUNs have
    none: no directory to make and remove, which can cost milliseconds)."""
    if not wanted:
        return contextlib.nullcontext("")
    import tempfile  # start-up: a heredoc's only

    return tempfile.TemporaryDirectory(prefix="kiln-script-", dir=tmpdir)


def dispatch_run(run: StageRun, build: BuildServices, instr: Run) -> None:
    expanded, _used = run.expand(instr)
    assert isinstance(expanded, Run)
    with run.at_line(instr):
        _check_entitlements(expanded, build.opts.allow)
    shell = run.editor.shell()
    run_args = run.args.used_in_run(run.config_env)
    argv, script = run_argv(expanded, shell)
    files: dict[str, str] = {}
    from_images: dict[str, str] = {}
    with run.at_line(instr):  # e.g. a bind mount's source is not in the context
        for m in expanded.mounts:
            if m.type in ("bind", "cache") and m.from_:
                from_images[m.from_] = build.ref_image(m.from_)
            elif m.type == "bind":
                files[f"bind:{m.source or '.'}"] = build.context.digest([m.source or "."])
    history = created_by(instr, build_args=run_args)
    step_text = instr.original
    where = f"{build.dockerfile_name}:{instr.line}"

    def action(b: Builder) -> str:
        ensure_platform_runs(run, step_text, where)
        extra_env = run.args.run_env(run.config_env)
        with (
            run.at_line(instr),  # e.g. a required secret was not given
            build.run_mounts(expanded.mounts, from_images) as ms,
            _script_dir(script is not None, build.tmpdir) as tmp,
        ):
            mounts = list(ms.mounts)
            if script is not None:
                path = os.path.join(tmp, expanded.heredocs[0].name)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(script)
                os.chmod(path, 0o755)
                from kiln.runtime import Mount  # start-up: only a heredoc script is mounted

                mounts.append(Mount("bind", path, argv[0], ("ro", "rbind")))
            env = {**extra_env, **ms.env}
            if ms.ssh_auth_sock and "SSH_AUTH_SOCK" not in run.config_env:
                env["SSH_AUTH_SOCK"] = ms.ssh_auth_sock  # as BuildKit: the image's wins
            try:
                with run.at_line(instr):  # e.g. USER names no user of the image
                    code = build.run_process(
                        b, argv, env, mounts, expanded.network, run.pos, expanded.security
                    )
            except StepFailed:
                raise
            except ProcessFailed as exc:  # the command could not be started (127/126)
                raise StepFailed(
                    f'building at STEP "{step_text}": {exc} ({where})',
                    exc.exit_code,
                ) from None
        if code != 0:
            raise StepFailed(
                f'building at STEP "{step_text}": while running runtime: exit status {code} '
                f"({where})",
                code,
            )
        return history

    run.layer_step(expanded, action, args=run_args, files=files, from_images=from_images)
