"""kiln system check: verify the store and, with --repair, remove what is safe (podman 5's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kiln.cli.state import State, exit_with, format_option, pass_state

if TYPE_CHECKING:
    from kiln.ops.check import CheckReport

EXIT_PROBLEMS = 125  # podman's exit status when the check finds errors


@click.command("check", short_help="Check the store and repair what is safe")
@click.option(
    "-r",
    "--repair",
    is_flag=True,
    help="Remove what is broken or left behind (damaged images: pull them again)",
)
@click.option(
    "-q",
    "--quick",
    is_flag=True,
    help="Skip the slow checks: blob digests and unpacked layers' contents",
)
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="With --repair, also remove working containers of damaged images",
)
@format_option(help="Format output: json, or table (the default)")
@pass_state
def command(state: State, repair, quick, force, format_):  # fmt: skip
    """Verify every blob's digest and size, every image's manifest, config and layers, every
    manifest list, every unpacked layer against its layer, and find what killed kiln
    processes left (RUN containers, bundles, mounts, working containers, scratch
    directories, snapshots, ingests, leases). Exits 125 if anything is (still) wrong."""
    from kiln.cli import render
    from kiln.ops.check import check

    with state.context() as ctx:
        report = check(ctx, repair=repair, quick=quick, force=force)
    if format_ == "json":
        state.echo(render.to_json(report.to_json()))
    else:
        state.echo(_text(report), nl=False)
    if report.problems:
        exit_with(EXIT_PROBLEMS)


def _text(report: CheckReport) -> str:
    lines = []
    for f in report.findings:
        line = f"{f.kind} {f.subject}: {f.problem}"
        if f.action:
            line += f" -> {f.action}"
        lines.append(line)
    checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.checked.items())
    lines.append(f"checked: {checked}; unpacked layers: {report.snapshot_check}")
    if report.repair:
        removed = ", ".join(f"{v} {k}" for k, v in sorted(report.removed.items())) or "nothing"
        lines.append(f"removed: {removed}; {report.bytes_freed} bytes freed")
    problems = len(report.problems)
    lines.append("no problems found" if not report.findings
                 else f"{problems} problem(s) left" if problems else "repaired")  # fmt: skip
    return "\n".join(lines) + "\n"
