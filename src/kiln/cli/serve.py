"""``kiln serve``: the Docker Engine API and libpod-style API over a socket.

kiln.cli and kiln.api are sibling front ends; this verb is the one place the
command line starts the server, so it is the single import from cli into api
that the layer contract allows (see pyproject.toml). It only parses flags.
"""

from __future__ import annotations

import click

from kiln.cli.state import State, pass_state


@click.command(
    "serve",
    help=(
        "Serve the Docker Engine API and libpod-style API over unix sockets and TCP. "
        "TCP beyond loopback needs --tlsverify with client certificates."
    ),
)
@click.option(
    "-H",
    "--host",
    "hosts",
    multiple=True,
    metavar="ADDRESS",
    help="unix:///path or tcp://HOST:PORT to listen on (repeatable; default "
    "unix:///run/kiln/kiln.sock, for a non-root user $XDG_RUNTIME_DIR/kiln/kiln.sock)",
)
@click.option("--tlsverify", is_flag=True, help="Require client certificates signed by --tlscacert")
@click.option("--tlscacert", metavar="FILE", help="CA certificate that signs client certificates")
@click.option("--tlscert", metavar="FILE", help="Server certificate")
@click.option("--tlskey", metavar="FILE", help="Server private key")
@click.option(
    "-t",
    "--time",
    "idle",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Exit after this many seconds without requests (0: never)",
)
@click.option(
    "--access-log",
    default="-",
    show_default=True,
    metavar="FILE",
    help="Where to write the access log: - for stderr, a file, or '' for none",
)
@click.option(
    "--varlink",
    metavar="unix:PATH",
    default=None,
    help="Also serve podman's varlink image API (io.podman) on this unix socket; "
    "alone when no --host is given",
)
@pass_state
def command(
    state: State, hosts, tlsverify, tlscacert, tlscert, tlskey, idle, access_log, varlink
) -> None:
    try:
        from kiln.api import server
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in ("starlette", "uvicorn"):
            raise
        from kiln.errors import Unavailable

        raise Unavailable(
            f"kiln serve needs {missing}, which is not installed: pip install 'kiln[server]'"
        ) from None
    from kiln.cli.state import enter_user_namespace
    from kiln.ops.config import Config

    enter_user_namespace()
    _server_log_level()
    tls = server.TLSOptions(verify=tlsverify, cacert=tlscacert, cert=tlscert, key=tlskey)
    config = Config.from_env(root=state.root, tmpdir=state.tmpdir)
    server.serve(
        list(hosts),
        config,
        tls=tls,
        idle_timeout=float(idle),
        access_log=access_log,
        varlink=varlink,
    )


def _server_log_level() -> None:
    """A server says what it listens on and when it stops, at INFO (as dockerd, whose
    default level is info): without an explicit --log-level, kiln serve's own messages
    show from INFO up while the rest of kiln keeps its default."""
    import logging

    from click.core import ParameterSource

    parent = click.get_current_context().find_root()
    if parent.get_parameter_source("log_level") == ParameterSource.DEFAULT:
        logging.getLogger("kiln.api").setLevel(min(logging.getLogger().level, logging.INFO))
