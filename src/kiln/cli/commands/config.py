"""kiln config: edit the image configuration of a working container."""

from __future__ import annotations

import click

from kiln.cli.commands._history_flag import add_history, add_history_option
from kiln.cli.state import State, pass_state


@click.command("config", short_help="Update image configuration settings of a working container")
@click.argument("container")
@click.option("--cmd", default=None, help="Default command (JSON array or shell words; '' clears)")
@click.option(
    "--entrypoint",
    default=None,
    help="Entrypoint (JSON array, or shell form run by the shell; '' clears)",
)
@click.option(
    "-e",
    "--env",
    multiple=True,
    metavar="K=V",
    help="Set K=V ($VAR expands; K alone: its value here); K- removes K, - all",
)
@click.option(
    "-l", "--label", multiple=True, metavar="K=V", help="Set a label; K- removes it, - all"
)
@click.option(
    "-a",
    "--annotation",
    multiple=True,
    metavar="K=V",
    help="Set a manifest annotation; K- removes it, - all",
)
@click.option(
    "-p", "--port", multiple=True, metavar="PORT[/PROTO]", help="Expose a port; P- removes, - all"
)
@click.option(
    "-v", "--volume", multiple=True, metavar="PATH", help="Add a volume; PATH- removes, - all"
)
@click.option("--workingdir", default=None, metavar="DIR", help="Default working directory")
@click.option("-u", "--user", default=None, metavar="USER[:GROUP]", help="Default user")
@click.option("--stop-signal", default=None, metavar="SIGNAL", help="Signal to stop containers")
@click.option(
    "--healthcheck", default=None, metavar="CMD", help="'CMD ...', 'CMD-SHELL ...' or NONE"
)
@click.option(
    "--healthcheck-interval",
    default=None,
    metavar="DURATION",
    help="Time between health checks (e.g. 30s)",
)
@click.option(
    "--healthcheck-timeout", default=None, metavar="DURATION", help="Time a health check may take"
)
@click.option(
    "--healthcheck-start-period",
    default=None,
    metavar="DURATION",
    help="Start-up time in which failures do not count",
)
@click.option(
    "--healthcheck-start-interval",
    default=None,
    metavar="DURATION",
    help="Time between health checks during the start period",
)
@click.option(
    "--healthcheck-retries",
    type=int,
    default=None,
    help="Failures in a row that make the container unhealthy",
)
@click.option("--shell", default=None, help="Shell for shell-form commands (JSON array or words)")
@click.option("--onbuild", multiple=True, metavar="INSTRUCTION", help="Add an ONBUILD trigger")
@click.option("--author", default=None, help="Image author")
@click.option("--created-by", default=None, help="History 'created by' of the next commit")
@click.option("--comment", default=None, help="Image comment")
@click.option("--history-comment", default=None, help="History comment of the next commit")
@click.option("--os", "os_", default=None, help="Image operating system")
@click.option("--arch", default=None, help="Image architecture")
@click.option("--variant", default=None, help="Image architecture variant")
@click.option("--os-version", default=None, help="Required operating system version")
@click.option(
    "--os-feature",
    multiple=True,
    metavar="FEATURE",
    help="Required OS feature; FEATURE- removes, - all",
)
@click.option("--hostname", default=None, help="Host name for containers of the image")
@click.option("--domainname", default=None, help="Domain name for containers of the image")
@add_history_option
@pass_state
def command(state: State, container, **kw):
    """Change the configuration CONTAINER will commit with."""
    from kiln.ops import containers as ops
    from kiln.ops.containers import ConfigSettings

    settings = ConfigSettings(
        cmd=kw["cmd"], entrypoint=kw["entrypoint"], env=list(kw["env"]),
        labels=list(kw["label"]), annotations=list(kw["annotation"]), ports=list(kw["port"]),
        volumes=list(kw["volume"]), workingdir=kw["workingdir"], user=kw["user"],
        stop_signal=kw["stop_signal"], healthcheck=kw["healthcheck"],
        healthcheck_interval=kw["healthcheck_interval"],
        healthcheck_timeout=kw["healthcheck_timeout"],
        healthcheck_start_period=kw["healthcheck_start_period"],
        healthcheck_start_interval=kw["healthcheck_start_interval"],
        healthcheck_retries=kw["healthcheck_retries"], shell=kw["shell"],
        onbuild=list(kw["onbuild"]), author=kw["author"], created_by=kw["created_by"],
        comment=kw["comment"], history_comment=kw["history_comment"], os=kw["os_"],
        arch=kw["arch"], variant=kw["variant"], os_version=kw["os_version"],
        os_features=list(kw["os_feature"]), hostname=kw["hostname"],
        domainname=kw["domainname"], add_history=add_history(kw["add_history"]),
    )  # fmt: skip
    if settings.is_empty():
        raise click.UsageError("give at least one setting to change (see kiln config --help)")
    with state.context(quiet=True) as ctx:
        ops.configure_container(ctx, container, settings)
