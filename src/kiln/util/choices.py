"""The values users choose between where several commands and APIs take the same option.

One home for each set, its spellings and its check, so ``kiln pull``, ``kiln from``,
``kiln build``, ``kiln run``, the Docker/libpod routes and the library accept the same
words. Each is a ``StrEnum``: a member compares equal to its word, so a value read back
from a record or a JSON body needs no conversion; ``parse`` takes what a user typed
(any case, the other tools' spellings) and refuses anything else with the choices.

=============  ===============================  =========================================
enum           words                            also accepted
=============  ===============================  =========================================
PullPolicy     always missing never newer       true false ifmissing ifnewer (podman)
ImageFormat    oci docker                       v2s2 (docker), the manifest media types
Compression    gzip zstd none                   uncompressed (none)
NetworkMode    host none private                bridge slirp4netns (private), default (host)
Isolation      oci chroot                       rootless, default (oci)
=============  ===============================  =========================================
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from kiln.errors import InvalidArgument


class Choice(StrEnum):
    """A set of words, with podman's and Docker's other spellings (``_ALIASES``)."""

    @classmethod
    def parse(cls, text: str, what: str | None = None) -> Self:
        """The member ``text`` names, in any case; ``InvalidArgument`` naming ``what``
        (e.g. ``"--format"``) and the choices otherwise."""
        word = str(text).strip().lower()
        try:
            return cls(_ALIASES.get(cls.__name__, {}).get(word, word))
        except ValueError:
            raise InvalidArgument(
                f"{what or _FLAGS.get(cls.__name__, 'value')} {str(text)!r} is invalid: "
                f"use one of {', '.join(cls.words())}"
            ) from None

    @classmethod
    def words(cls) -> tuple[str, ...]:
        """The canonical words, in declaration order (for ``click.Choice`` and help)."""
        return tuple(m.value for m in cls)


class PullPolicy(Choice):
    """When to pull an image that may already be in the store (podman's ``--pull``)."""

    ALWAYS = "always"
    MISSING = "missing"
    NEVER = "never"
    NEWER = "newer"

    @classmethod
    def parse(cls, text: str, what: str | None = None) -> Self:
        """podman's spellings too: ``true`` (always), ``false``/``ifmissing`` (missing),
        ``ifnewer`` (newer), in any case."""
        word = str(text).strip().lower()
        try:
            return cls(_PULL_ALIASES.get(word, word))
        except ValueError:
            raise InvalidArgument(
                f'invalid pull policy "{text}": use one of {", ".join(PULL_POLICIES)}'
            ) from None

    def asks_registry(self, have_local: bool) -> bool:
        """The one pull decision: whether the registry is contacted, given whether a local
        image already answers the name. ``never`` with nothing local is the caller's
        NotFound; ``newer`` with a local image asks the registry and pulls only when its
        digest is not the one the local image came from."""
        if self is PullPolicy.NEVER:
            return False
        if self is PullPolicy.MISSING:
            return not have_local
        return True

    def for_platform(self, platform_asked: bool) -> PullPolicy:
        """A local image of another platform must not satisfy ``missing`` when a platform
        is asked for and no local image of it was found: the registry is asked."""
        return PullPolicy.ALWAYS if platform_asked and self is PullPolicy.MISSING else self


class ImageFormat(Choice):
    """The manifest and config format an image is written in (``--format``)."""

    OCI = "oci"
    DOCKER = "docker"


class Compression(Choice):
    """How new layers are compressed (``--compression``, ``--compression-format``)."""

    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"


class NetworkMode(Choice):
    """The network a RUN step or ``kiln run`` gets: the host's, none, or a private one."""

    HOST = "host"
    NONE = "none"
    PRIVATE = "private"


class Isolation(Choice):
    """How RUN is isolated: an OCI runtime (runc), or chroot with namespaces and no runtime."""

    OCI = "oci"
    CHROOT = "chroot"


_PULL_ALIASES = {"true": "always", "false": "missing", "ifmissing": "missing", "ifnewer": "newer"}
# other tools' spellings, by enum; and the flag a refusal names
_ALIASES: dict[str, dict[str, str]] = {
    "PullPolicy": _PULL_ALIASES,
    "ImageFormat": {
        "v2s2": "docker",
        "application/vnd.oci.image.manifest.v1+json": "oci",
        "application/vnd.docker.distribution.manifest.v2+json": "docker",
    },
    "Compression": {"uncompressed": "none"},
    "NetworkMode": {"default": "host", "bridge": "private", "slirp4netns": "private"},
    "Isolation": {"default": "oci", "rootless": "oci"},
}
_FLAGS = {"ImageFormat": "--format", "Compression": "--compression",
          "NetworkMode": "--network", "Isolation": "--isolation"}  # fmt: skip
PULL_POLICIES = PullPolicy.words()
IMAGE_FORMATS = ImageFormat.words()
COMPRESSIONS = Compression.words()
NETWORK_MODES = NetworkMode.words()
ISOLATIONS = Isolation.words()
