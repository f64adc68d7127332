"""The registry connection flags pull, push, search and login share."""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from kiln.cli.go_flags import OptionalValue

if TYPE_CHECKING:
    from kiln.ops.pull_options import RegistryOptions

REGISTRY_FLAGS = ("authfile", "creds", "tls_verify", "cert_dir")


def registry_flags(
    *, creds: bool = True, scope: str = "", retry: bool = False, new_authfile: bool = False
):
    """Add ``--authfile``, ``--creds`` (unless ``creds=False``), ``--tls-verify`` and
    ``--cert-dir``, and with ``retry`` podman's ``--retry`` and ``--retry-delay``; the
    command receives the ones given as one ``RegistryOptions``, ``registry_options``
    (None when none is given: a build from local images then loads no registry code).

    ``scope`` ends the ``--authfile`` help, e.g. ``" (registries)"`` where the verb
    also takes file transports. An ``--authfile`` that does not exist is refused, as
    podman and buildah refuse it, unless ``new_authfile`` (login writes it).
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
    if retry:
        opts.append(
            click.option(
                "--retry",
                type=click.IntRange(min=0),
                default=None,
                metavar="N",
                help="Retries after a failed registry request (default 2, or $KILN_RETRY)",
            )
        )
        opts.append(
            click.option(
                "--retry-delay",
                default=None,
                metavar="DURATION",
                help="Wait between retries, no backoff (default 2s doubling, or $KILN_RETRY_DELAY)",
            )
        )

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kw):
            given = {k: kw.pop(k, None) for k in REGISTRY_FLAGS}
            given = {k: v for k, v in given.items() if v is not None}
            if "authfile" in given and not new_authfile:
                require_authfile(given["authfile"])
            if "creds" in given:
                given["creds"] = _ask_missing_password(given["creds"])
            if retry:
                given.update(_retry(kw.pop("retry", None), kw.pop("retry_delay", None)))
            kw["registry_options"] = _options(given)
            return f(*args, **kw)

        for opt in reversed(opts):
            command = opt(command)
        return command

    return decorate


# podman's flags that change nothing here, accepted so that its scripts run unchanged
_NO_OPS = {
    "--disable-content-trust": "Accepted for podman and Docker compatibility; does nothing",
    "--remove-signatures": "Accepted for podman compatibility; kiln copies no signatures",
}


def no_op_flags(*flags: str):
    """Add podman's ``flags`` that kiln has nothing to do for (see ``_NO_OPS``); the
    command never sees them."""
    params = [flag.removeprefix("--").replace("-", "_") for flag in flags]

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kw):
            for param in params:
                kw.pop(param, None)
            return f(*args, **kw)

        for flag in reversed(flags):
            command = click.option(flag, is_flag=True, help=_NO_OPS[flag])(command)
        return command

    return decorate


def require_authfile(path: str) -> None:
    """Refuse an ``--authfile`` that is not there: a mistyped path would otherwise mean
    no credentials, and a registry's "authentication required" that hides the typo."""
    if not os.path.exists(path):
        from kiln.errors import InvalidArgument

        raise InvalidArgument(f"--authfile {path}: no such file (kiln login creates one)")


def _ask_missing_password(creds: str) -> str:
    """``--creds USER`` (or ``USER:``): ask for the password, as podman does; with no
    terminal to ask, say so rather than send an empty password the registry refuses."""
    user, _, password = creds.partition(":")
    if not user or password:
        return creds  # a missing username is parse_creds' error
    if not sys.stdin.isatty():
        from kiln.errors import InvalidArgument

        raise InvalidArgument(
            f"--creds {user} gives no password and there is no terminal to ask for it: "
            "use --creds USER:PASSWORD"
        )
    return f"{user}:{click.prompt('Password', hide_input=True, err=True)}"


def _options(given: dict[str, Any]) -> RegistryOptions | None:
    if not given:
        return None
    # start-up: only a command given a registry flag loads the options' module
    from kiln.ops.pull_options import RegistryOptions

    return RegistryOptions(**given)


def _retry(retry: int | None, retry_delay: str | None) -> dict[str, Any]:
    if retry is None and not retry_delay:
        return {}
    # start-up: only a command given a retry flag loads the options' module
    from kiln.ops.pull_options import retry_values

    return retry_values(retry, retry_delay)
