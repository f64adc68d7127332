"""Options every use case may consult, read once from the environment.

Front ends build a :class:`Config` (flags override the environment) and pass it
to :func:`kiln.ops.context.open_context`. Nothing here touches the disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import field, replace

from kiln.util.lazy_dataclass import dataclass


@dataclass(frozen=True)
class Config:
    """Where the store and its configuration files are."""

    root: str | None = None  # store root; None -> kiln.store's default ($KILN_ROOT, ...)
    tmpdir: str = ""  # scratch space for spooling streams (stdin archives, downloads);
    # "": the system's temporary directory, looked up when first needed (``scratch_dir``)
    registries_conf: str | None = None  # containers-registries.conf(5) path
    authfile: str | None = None  # containers-auth.json(5) path
    tls_verify: bool = True
    cert_dir: str | None = None
    image_format: str = "oci"  # default format for images kiln writes ("oci" | "docker")
    # registry retries where a command gives none (containers.conf's retry, retry_delay):
    # retries after the first attempt, and a Go duration for every wait (no backoff)
    retry: str | None = None  # $KILN_RETRY
    retry_delay: str | None = None  # $KILN_RETRY_DELAY
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Config:
        env = os.environ if env is None else env
        cfg = cls(
            root=env.get("KILN_ROOT") or None,
            tmpdir=env.get("KILN_TMPDIR") or env.get("TMPDIR") or "",
            registries_conf=env.get("CONTAINERS_REGISTRIES_CONF")
            or env.get("REGISTRIES_CONFIG_PATH")
            or None,
            authfile=env.get("REGISTRY_AUTH_FILE") or None,
            image_format=(env.get("BUILDAH_FORMAT") or "oci").lower(),
            retry=env.get("KILN_RETRY") or None,
            retry_delay=env.get("KILN_RETRY_DELAY") or None,
        )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(cfg, **overrides) if overrides else cfg

    def scratch_dir(self) -> str:
        """The configured scratch space, else the system's temporary directory (looked up
        only here, when a command needs it)."""
        if self.tmpdir:
            return self.tmpdir
        from kiln.util.scratch import system_tmpdir  # start-up: as said above

        return system_tmpdir()


__all__ = ["Config"]
