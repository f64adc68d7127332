"""podman-style optional-value flags: bare means the default, a value needs '='."""

from __future__ import annotations

import click
from click.testing import CliRunner

from kiln.cli.go_flags import OptionalValue, expand_bare_flags


@click.command()
@click.option("--layers", type=click.BOOL, cls=OptionalValue, default=None)
@click.option("--pull", cls=OptionalValue, no_opt_default="always", default="missing")
@click.argument("context", required=False)
def build(layers, pull, context):
    click.echo(f"{layers} {pull} {context}")


def run(*args: str) -> str:
    result = CliRunner().invoke(build, expand_bare_flags(build, list(args)))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_bare_flags_take_their_default_and_leave_the_next_argument_alone():
    assert run("--layers", "ctx") == "True missing ctx"
    assert run("--pull", "ctx") == "None always ctx"


def test_values_after_equals_and_defaults():
    assert run("--layers=false", "--pull=never", "ctx") == "False never ctx"
    assert run("ctx") == "None missing ctx"


def test_arguments_after_double_dash_are_not_rewritten():
    assert expand_bare_flags(build, ["--", "--layers"]) == ["--", "--layers"]
