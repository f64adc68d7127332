"""kiln info: the store, snapshotter, runtime, registries and emulators kiln would use."""

from __future__ import annotations

import json
from typing import Any

import click

from kiln.cli.state import State, format_option, pass_state


@click.command("info", short_help="Display kiln system information")
@format_option(help="json, or a Go template such as {{.Store.GraphRoot}}", short=True)
@pass_state
def command(state: State, format_):
    """Show what kiln works with, as `podman info` does: the host and its OCI runtime
    (path and version), the emulators registered in binfmt_misc, the store (root, size on
    disk, snapshot driver and whether overlayfs works there), the registries
    configuration in effect, and kiln's version."""
    from kiln.cli import render
    from kiln.ops.system import system_info

    with state.context(quiet=True) as ctx:
        info = system_info(ctx)
    if format_ == "json":
        state.echo(render.to_json(info))
    elif format_:
        state.echo(render.templated(format_, [info]), nl=False)
    else:
        state.echo("\n".join(yaml_lines(info)))


def yaml_lines(value: Any, indent: str = "") -> list[str]:
    """``value`` (JSON-shaped) as block YAML, the way podman prints its info."""
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{indent}{key}:")
                lines += yaml_lines(item, indent + ("" if isinstance(item, list) else "  "))
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
    else:
        for item in value:
            sub = yaml_lines(item, indent + "  ") if isinstance(item, dict | list) else []
            if sub:
                lines.append(f"{indent}- {sub[0].lstrip()}")
                lines += sub[1:]
            else:
                lines.append(f"{indent}- {_scalar(item)}")
    return lines


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    special = any(c in text for c in ":#{}[],&*!|>'\"%@`") or text.strip() != text
    if not text or special or text.lower() in ("true", "false", "null", "yes", "no"):
        return json.dumps(text)
    try:
        float(text)  # "1.56" stays a string, not a YAML number
    except ValueError:
        return text
    return json.dumps(text)
