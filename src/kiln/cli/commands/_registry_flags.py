"""The registry connection flags pull, push, search and login share."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import click

from kiln.cli.go_flags import OptionalValue

if TYPE_CHECKING:
    from kiln.ops.pull_options import RegistryOptions

REGISTRY_FLAGS = ("authfile", "creds", "tls_verify", "cert_dir")


def registry_flags(*, creds: bool = True, scope: str = ""):
    """Add ``--authfile``, ``--creds`` (unless ``creds=False``), ``--tls-verify`` and
    ``--cert-dir``; the command receives the ones given as one ``RegistryOptions``,
    ``registry_options`` (None when none is given: a build from local images then loads
    no registry code).

    ``scope`` ends the ``--authfile`` help, e.g. ``" (registries)"`` where the verb
    also takes file transports.
    """
    opts = [
        click.option("--authfile", default=None, help=f"Path of the authentication file{scope}")
    ]
    if creds:
        opts.append(
            click.option(
                "--creds", default=None, metavar="USER[:PASS]", help="Registry credentials"
            )
        )
    opts.append(
        click.option(
            "--tls-verify",
            type=click.BOOL,
            cls=OptionalValue,
            default=None,
            help="Require HTTPS and verify certificates",
        )
    )
    opts.append(click.option("--cert-dir", default=None, help="Directory of registry certificates"))

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kw):
            given = {k: kw.pop(k, None) for k in REGISTRY_FLAGS}
            kw["registry_options"] = _options({k: v for k, v in given.items() if v is not None})
            return f(*args, **kw)

        for opt in reversed(opts):
            command = opt(command)
        return command

    return decorate


def _options(given: dict[str, Any]) -> RegistryOptions | None:
    if not given:
        return None
    # start-up: only a command given a registry flag loads the options' module
    from kiln.ops.pull_options import RegistryOptions

    return RegistryOptions(**given)
