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


def test_short_options_parse_without_a_failed_long_option_lookup(monkeypatch):
    import click.exceptions

    from kiln.cli.go_flags import skip_long_lookup_of_short_options

    skip_long_lookup_of_short_options()
    built = []
    real_init = click.exceptions.NoSuchOption.__init__

    def counting_init(self, *a, **kw):
        built.append(a)
        real_init(self, *a, **kw)

    monkeypatch.setattr(click.exceptions.NoSuchOption, "__init__", counting_init)

    @click.command()
    @click.option("-q", "--quiet", is_flag=True)
    @click.option("-a", "--all", "all_", is_flag=True)
    @click.option("-t", "--tag", multiple=True)
    @click.argument("ctx", required=False)
    def cmd(quiet, all_, tag, ctx):
        click.echo(f"{quiet} {all_} {tag} {ctx}")

    runner = CliRunner()
    out = runner.invoke(cmd, ["-q", "-t", "a", "-tb", "--tag=c", "-qa", "dir"])
    assert out.exit_code == 0, out.output
    assert out.output == "True True ('a', 'b', 'c') dir\n"
    assert built == []  # no exception built (and caught) per short option
    # what click refuses is refused as before, with its message
    bad = runner.invoke(cmd, ["-x"])
    assert bad.exit_code == 2 and "No such option '-x'" in bad.output
    bad = runner.invoke(cmd, ["--quiett"])
    assert bad.exit_code == 2 and "Did you mean" in bad.output


@click.command()
@click.option("-q", "--quiet", is_flag=True)
@click.option("--rm/--no-rm", "rm", default=True)
@click.option("-t", "--tag", default="")
@click.argument("rest", nargs=-1)
def flags(quiet, rm, tag, rest):
    click.echo(f"{quiet} {rm} {tag} {' '.join(rest)}")


def run_flags(*args: str) -> str:
    result = CliRunner().invoke(flags, expand_bare_flags(flags, list(args)))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_boolean_flags_take_a_value_after_equals_as_pflag_reads_one():
    # podman's and docker's flags are pflag's: --no-cache=true, --rm=false, -q=1
    assert run_flags("--quiet=true", "--rm=false") == "True False"
    assert run_flags("-q=1", "--rm=True", "x") == "True True  x"
    assert run_flags("--quiet=false", "--no-rm=false") == "False True"
    assert run_flags("--quiet=FALSE", "--rm=0") == "False False"


def test_a_flag_like_value_of_an_option_or_after_double_dash_stays():
    assert (
        run_flags("-t", "--quiet=true", "--", "--rm=false") == "False True --quiet=true --rm=false"
    )


def test_a_value_that_is_no_boolean_is_left_to_click():
    result = CliRunner().invoke(flags, expand_bare_flags(flags, ["--quiet=maybe"]))
    assert result.exit_code == 2 and "does not take a value" in result.output


def test_a_command_without_interspersed_options_stops_at_its_first_argument():
    @click.command(context_settings={"allow_interspersed_args": False})
    @click.option("-q", "--quiet", is_flag=True)
    @click.option("-v", "--volume", multiple=True)
    @click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
    def run_cmd(quiet, volume, cmd):
        click.echo(f"{quiet} {' '.join(cmd)}")

    args = ["-v", "--quiet=true", "--quiet=true", "ctr", "tool", "--quiet=false"]
    expanded = expand_bare_flags(run_cmd, args)
    assert expanded == ["-v", "--quiet=true", "--quiet", "ctr", "tool", "--quiet=false"]


def test_a_tri_state_flag_is_never_turned_into_unset():
    # default None means "not given, ask elsewhere" ($BUILDAH_HISTORY for --add-history):
    # --x=false must not read as the flag left out, nor --x=true as given when it is not
    @click.command()
    @click.option("--x", is_flag=True, default=None)
    def tri(x):
        click.echo(f"{x}")

    false = CliRunner().invoke(tri, expand_bare_flags(tri, ["--x=false"]))
    assert false.exit_code == 2 and "does not take a value" in false.output
    assert CliRunner().invoke(tri, expand_bare_flags(tri, ["--x"])).output == "True\n"
    assert CliRunner().invoke(tri, expand_bare_flags(tri, [])).output == "None\n"
