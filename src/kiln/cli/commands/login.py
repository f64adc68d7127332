"""kiln login: check credentials against a registry and store them in the auth file."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from kiln.cli.commands._registry_flags import registry_flags
from kiln.cli.state import State, pass_state


@click.command("login", short_help="Log in to a container registry")
@click.argument("registry", required=False)
@click.option("-u", "--username", default=None, help="Username for the registry")
@click.option("-p", "--password", default=None, help="Password for the registry")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin")
@click.option("--get-login", is_flag=True, help="Print the username stored for REGISTRY")
@registry_flags(creds=False, retry=True, new_authfile=True)
@pass_state
def command(
    state: State, registry, username, password, password_stdin, get_login, registry_options
):
    """Log in to REGISTRY (default: the first unqualified-search registry); the credentials
    are written to the containers auth file ($XDG_RUNTIME_DIR/containers/auth.json,
    $REGISTRY_AUTH_FILE or --authfile)."""
    from kiln.errors import InvalidArgument
    from kiln.ops import registry as ops

    registry = registry or ops.default_login_registry(None, registry_options)

    if get_login:
        authfile = registry_options.authfile if registry_options else None
        state.echo(ops.get_login(None, registry, authfile=authfile))
        return
    if not (username or password or password_stdin) and _stored_login_is_valid(
        state, registry, registry_options
    ):
        return
    if password is not None and password_stdin:
        raise InvalidArgument("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise InvalidArgument("--password-stdin needs --username")
        password = password_from_stdin(sys.stdin)
        if not password:  # `echo "$UNSET" | kiln login ...`: podman asks, never stores it
            raise InvalidArgument("--password-stdin read no password: stdin was empty")
    if password == "":
        password = None  # as podman: an empty --password is none given
    if (not username or password is None) and not sys.stdin.isatty():
        missing = "username" if not username else "password"
        raise InvalidArgument(
            f"no {missing} given and no terminal to ask for it: use --username and "
            "--password or --password-stdin"
        )
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    ops.login(
        None,
        registry,
        username,
        password,
        options=registry_options,
    )
    state.echo("Login Succeeded!")


MAX_STDIN_PASSWORD = 1 << 20


def password_from_stdin(stream: TextIO) -> str:
    """All of stdin as podman reads it: each line without its newline (and a ``\r`` before
    it), the lines joined with nothing between them (``token\n`` -> ``token``)."""
    from kiln.errors import InvalidArgument

    data = stream.read(MAX_STDIN_PASSWORD + 1)
    if len(data) > MAX_STDIN_PASSWORD:
        raise InvalidArgument("--password-stdin: stdin holds more than 1 MiB, not a password")
    return "".join(line.removesuffix("\r") for line in data.split("\n"))


def _stored_login_is_valid(state: State, registry: str, registry_options) -> bool:
    """podman's bare ``login``: check the credentials already stored for REGISTRY against
    it, and stop there when they are valid."""
    from kiln.errors import Unauthorized
    from kiln.ops import registry as ops

    authfile = registry_options.authfile if registry_options else None
    stored = ops.stored_login(None, registry, authfile=authfile)
    if stored is None:
        return False
    state.echo(f"Authenticating with existing credentials for {registry}")
    try:
        host = ops.verify_login(None, registry, *stored, options=registry_options)
    except Unauthorized:
        state.echo("Existing credentials are invalid, please enter valid username and password")
        return False
    state.echo(f"Existing credentials are valid. Already logged in to {host}")
    return True
