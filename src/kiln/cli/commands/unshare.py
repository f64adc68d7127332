"""kiln unshare: run a command in the user namespace a rootless kiln works in."""

from __future__ import annotations

import os

import click

from kiln.cli.state import State, enter_user_namespace, pass_state


@click.command(
    "unshare",
    short_help="Run a command in rootless kiln's user namespace",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED, metavar="[--] [COMMAND...]")
@pass_state
def command(state: State, cmd):
    """Run COMMAND (default: $SHELL) as uid 0 of the user and mount namespace a non-root
    user's kiln works in, as ``buildah unshare`` and ``podman unshare`` do. Files of the
    store owned by the image's ids are the user's there, e.g. ``kiln unshare rm -rf
    ~/.local/share/kiln`` removes a store. $KILN_ROOT is set to the store."""
    from kiln.errors import InvalidArgument, ProcessFailed
    from kiln.ops.context import store_root

    if os.geteuid() == 0:
        raise InvalidArgument("please use unshare with rootless: kiln runs as root already")
    args = list(cmd)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        args = [os.environ.get("SHELL") or "/bin/sh"]
    root = store_root(state.root)
    enter_user_namespace()
    os.environ["KILN_ROOT"] = root
    try:
        os.execvp(args[0], args)
    except FileNotFoundError:
        raise ProcessFailed(f'exec: "{args[0]}": executable file not found in $PATH', 127) from None
    except PermissionError:
        raise ProcessFailed(f'exec: "{args[0]}": permission denied', 126) from None
