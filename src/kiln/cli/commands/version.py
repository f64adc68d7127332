"""kiln version: what this kiln is, as `podman version` prints it."""

from __future__ import annotations

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("version", short_help="Display the kiln version information")
@format_option(help="json, or a Go template such as {{.Client.Version}}", short=True)
@pass_state
def command(state: State, format_):
    """Print kiln's version, the Docker Engine API version its server speaks, the Python
    it runs on, when it was built (installed) and the OS/architecture."""
    from kiln.cli import render
    from kiln.ops.system import version_info

    info = version_info()
    if format_ == "json":
        state.echo(render.to_json(info))
        return
    if format_:  # {{.Version}} works too, as podman's Client fields are promoted
        state.echo(render.templated(format_, [{**info["Client"], **info}]), nl=False)
        return
    c = info["Client"]
    rows = [
        ("Client:", "kiln"),
        ("Version:", c["Version"]),
        ("API Version:", f"{c['APIVersion']} (libpod {c['LibpodAPIVersion']})"),
        ("Python Version:", c["PythonVersion"]),
        ("Built:", c["BuiltTime"]),
        ("OS/Arch:", c["OsArch"]),
    ]
    state.echo(render.table(None, rows, minwidth=14), nl=False)
