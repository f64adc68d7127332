"""The platform and annotation flags `manifest add` and `manifest annotate` share."""

from __future__ import annotations

import functools

import click

from kiln.errors import InvalidArgument


def platform_flags(f):
    """``--annotation``, ``--arch``, ``--features``, ``--os``, ``--os-features``,
    ``--os-version``, ``--variant``; the command receives them as one dict, ``platform``."""
    opts = [
        click.option(
            "--annotation",
            "annotations",
            multiple=True,
            metavar="KEY=VALUE",
            help="Set an annotation on the entry (repeatable)",
        ),
        click.option("--arch", default=None, help="Override the architecture of the image"),
        click.option(
            "--features", multiple=True, help="Override the features of the image (repeatable)"
        ),
        click.option("--os", "os_", default=None, help="Override the OS of the image"),
        click.option("--os-features", multiple=True, help="Override the OS features of the image"),
        click.option("--os-version", default=None, help="Override the OS version of the image"),
        click.option("--variant", default=None, help="Override the variant of the image"),
    ]

    @functools.wraps(f)
    def command(*args, **kw):
        kw["platform"] = {
            "arch": kw.pop("arch"),
            "os": kw.pop("os_"),
            "variant": kw.pop("variant"),
            "os_version": kw.pop("os_version"),
            "features": _split(kw.pop("features")),
            "os_features": _split(kw.pop("os_features")),
            "annotations": parse_annotations(kw.pop("annotations")),
        }
        return f(*args, **kw)

    for opt in reversed(opts):
        command = opt(command)
    return command


def _split(values) -> list[str]:
    return [v for value in values for v in value.split(",") if v]


def parse_annotations(values) -> dict[str, str]:
    out = {}
    for value in values:
        key, eq, val = value.partition("=")
        if not eq or not key:
            raise InvalidArgument(f'no value given for annotation "{value}": use KEY=VALUE')
        out[key] = val
    return out
