"""History ``created_by`` strings in buildah's (imagebuildah's) form.

- RUN: ``/bin/sh -c <instruction text after "RUN ">`` with each heredoc body
  (trimmed) appended on its own line, prefixed by ``|N K=V ...`` when build
  args are in effect (sorted ``K=V`` pairs, N their count);
- COPY/ADD: ``/bin/sh -c #(nop) COPY[ --link] <content summary> in <dest> ``
  (note the trailing space, as buildah writes it);
- ARG: ``/bin/sh -c #(nop) ARG <sorted names of the build args in effect>``;
- anything else: ``/bin/sh -c #(nop) <instruction as written>``.

The prefix is always ``/bin/sh -c``, whatever ``SHELL`` says (buildah writes it so; Docker's
classic builder would write the SHELL words). The cache key still sees the SHELL step.
"""

from __future__ import annotations

from collections.abc import Mapping

from kiln.build.instructions import Add, Arg, Copy, Instruction, Run

__all__ = ["created_by", "run_args_prefix"]

PREFIX = "/bin/sh -c"


def run_args_prefix(build_args: Mapping[str, str]) -> str:
    """``|N K=V ...`` for the build args a RUN sees ('' when none)."""
    if not build_args:
        return ""
    pairs = sorted(f"{k}={v}" for k, v in build_args.items())
    return f"|{len(pairs)} {' '.join(pairs)} "


def created_by(
    instr: Instruction,
    *,
    build_args: Mapping[str, str] | None = None,
    content_summary: str = "",
) -> str:
    """Render ``created_by`` for ``instr``.

    ``build_args``: for RUN, the args it sees (see ``BuildArgs.used_in_run``);
    for ARG, the build args in effect (only names are printed).
    ``content_summary``: for COPY/ADD, e.g. ``file:<sha256>`` or ``dir:<sha256>``.
    """
    sh = PREFIX
    if isinstance(instr, Run):
        text = instr.original[4:] if len(instr.original) > 4 else ""
        heredocs = "".join("\n" + h.body.strip() for h in instr.heredocs)
        return f"{run_args_prefix(build_args or {})}{sh} {text}{heredocs}"
    if isinstance(instr, Copy | Add):
        link = " --link" if instr.link else ""
        return f"{sh} #(nop) {instr.name}{link} {content_summary} in {instr.dest} "
    if isinstance(instr, Arg):
        return f"{sh} #(nop) ARG {' '.join(sorted(build_args or {}))}"
    return f"{sh} #(nop) {instr.original}"
