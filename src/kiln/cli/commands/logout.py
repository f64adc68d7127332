"""kiln logout: forget the stored credentials of a registry."""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command("logout", short_help="Log out of a container registry")
@click.argument("registry", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Remove the credentials of every registry")
@click.option("--authfile", default=None, help="Path of the authentication file")
@pass_state
def command(state: State, registry, all_, authfile):
    """Remove the credentials of REGISTRY (default: the first unqualified-search registry)
    or of all registries from the auth file."""
    from kiln.cli.commands._registry_flags import require_authfile
    from kiln.errors import InvalidArgument
    from kiln.ops import registry as ops

    if authfile is not None:
        require_authfile(authfile)

    if registry and all_:
        raise InvalidArgument("--all takes no registry name")
    if not (registry or all_):
        registry = ops.default_login_registry(None)
    ops.logout(None, registry, authfile=authfile, all=all_)
    if all_:
        state.echo("Removed login credentials for all registries")
    else:
        state.echo(f"Removed login credentials for {registry}")
