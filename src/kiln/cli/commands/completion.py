"""kiln completion: the shell completion script for bash, zsh or fish (click's)."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state

SHELLS = ("bash", "zsh", "fish")


@click.command("completion", short_help="Generate a shell completion script")
@click.argument("shell", type=click.Choice(SHELLS))
@pass_state
def command(state: State, shell):
    """Print the completion script for SHELL (bash, zsh or fish). Load it with

    \b
        source <(kiln completion bash)                   # bash, this shell
        kiln completion bash > /etc/bash_completion.d/kiln
        kiln completion zsh > "${fpath[1]}/_kiln"         # zsh
        kiln completion fish > ~/.config/fish/completions/kiln.fish
    """
    from click.shell_completion import get_completion_class

    from kiln.cli.main import cli

    comp_cls = get_completion_class(shell)
    if comp_cls is None:  # click knows the three SHELLS; guard against a trimmed click
        raise click.UsageError(f"no completion support for {shell} in this click")
    state.echo(comp_cls(cli, {}, "kiln", "_KILN_COMPLETE").source())
