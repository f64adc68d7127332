"""TLS settings for one registry host, in the containers ``certs.d`` layout.

A certs directory holds ``*.crt`` CA certificates and ``*.cert`` + ``*.key``
client certificate pairs. Without ``--cert-dir`` the defaults are
``/etc/containers/certs.d/<host:port>/`` and ``/etc/docker/certs.d/<host:port>/``.
"""

from __future__ import annotations

import os
import ssl

from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

DEFAULT_CERTS_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")


@dataclass(frozen=True)
class TLSSettings:
    """What a connection to one host needs: verification on/off, CAs, client certs."""

    verify: bool = True
    ca_files: tuple[str, ...] = ()
    client_pairs: tuple[tuple[str, str], ...] = ()
    allow_http: bool = False  # fall back to plain HTTP when HTTPS fails (insecure only)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx takes as ``verify=``."""
        if not self.verify:  # nothing is verified: no need to load the system's CAs
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context()
            for ca in self.ca_files:
                try:
                    ctx.load_verify_locations(cafile=ca)
                except (OSError, ssl.SSLError) as exc:
                    raise InvalidArgument(f"cannot load CA certificate {ca}: {exc}") from None
        for cert, key in self.client_pairs:
            try:
                ctx.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidArgument(
                    f"cannot load client certificate {cert} with key {key}: {exc}"
                ) from None
        return ctx


def _scan_dir(path: str) -> tuple[list[str], list[tuple[str, str]]]:
    cas: list[str] = []
    pairs: list[tuple[str, str]] = []
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return cas, pairs
    except OSError as exc:
        raise InvalidArgument(f"cannot read certificate directory {path}: {exc}") from None
    for name in names:
        full = os.path.join(path, name)
        if name.endswith(".crt"):
            cas.append(full)
        elif name.endswith(".cert"):
            key = full[: -len(".cert")] + ".key"
            if not os.path.exists(key):
                raise InvalidArgument(
                    f"missing key {os.path.basename(key)} for client certificate {full}"
                )
            pairs.append((full, key))
        elif name.endswith(".key"):
            cert = full[: -len(".key")] + ".cert"
            if not os.path.exists(cert):
                raise InvalidArgument(f"missing client certificate for key {full}")
    return cas, pairs


def tls_settings(
    host: str,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    insecure: bool = False,
    certs_roots: tuple[str, ...] = DEFAULT_CERTS_DIRS,
) -> TLSSettings:
    """Settings for ``host`` (``name[:port]``).

    ``tls_verify=None`` means "not given": verify unless registries.conf marks the
    host ``insecure``. An explicit ``tls_verify=True`` wins over registries.conf, as
    in podman. Only an unverified (insecure) host may fall back to plain HTTP.
    """
    verify = (not insecure) if tls_verify is None else tls_verify
    dirs = [cert_dir] if cert_dir else [os.path.join(root, host) for root in certs_roots]
    cas: list[str] = []
    pairs: list[tuple[str, str]] = []
    for d in dirs:
        if cert_dir and not os.path.isdir(d):
            raise InvalidArgument(f"certificate directory {d} does not exist")
        c, p = _scan_dir(d)
        cas += c
        pairs += p
    return TLSSettings(verify, tuple(cas), tuple(pairs), allow_http=not verify)
