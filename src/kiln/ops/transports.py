"""Transport strings, as skopeo/podman/buildah spell them, parsed into values.

    oci:DIR[:TAG]                 an OCI image layout directory
    oci-archive:PATH[:TAG]        an OCI image layout in a tar file
    docker-archive:PATH[:REF]     a `docker save` tar file
    dir:PATH                      one image as loose files (manifest.json, config, layers)
    docker://REF                  a registry (handled by ``kiln.ops.registry``)
    NAME / ID                     kiln's own store (``docker:24`` too: the image
                                  "docker", as podman reads it)

As in containers/image, the path ends at the first ``:`` after the transport.
"""

from __future__ import annotations

from kiln.errors import InvalidArgument
from kiln.image.transport_names import DIR, DOCKER_ARCHIVE, FILE_TRANSPORTS, OCI, OCI_ARCHIVE
from kiln.oci import Reference
from kiln.util.lazy_dataclass import dataclass

STORE = "store"
DOCKER = "docker"
_REFUSED = {
    "containers-storage": (
        "kiln keeps its own store and does not read or write containers-storage; "
        "use `podman save` and `kiln load`, or `kiln save` and `podman load`"
    ),
    "docker-daemon": (
        "kiln does not talk to a Docker daemon; use `docker save` and `kiln load`, "
        "or `kiln save` and `docker load`"
    ),
    "ostree": "the ostree transport is not supported",
    "sif": "the sif transport is not supported",
    "tarball": "the tarball transport is not supported; use `kiln import`",
}


@dataclass(frozen=True)
class TransportRef:
    transport: str
    path: str = ""  # file transports: the directory or file
    reference: str = ""  # tag (oci), docker reference (docker-archive, docker), name (store)

    @property
    def is_store(self) -> bool:
        return self.transport == STORE

    @property
    def is_file(self) -> bool:
        return self.transport in FILE_TRANSPORTS

    def __str__(self) -> str:
        if self.transport == STORE:
            return self.reference
        if self.transport == DOCKER:
            return f"docker://{self.reference}"
        if self.transport == DIR:
            return f"dir:{self.path}"
        return f"{self.transport}:{self.path}" + (f":{self.reference}" if self.reference else "")


def names_transport(value: str) -> bool:
    """True when ``value`` is written with a transport kiln reads (``docker://``,
    ``oci:``, ``oci-archive:``, ``docker-archive:``, ``dir:``), not as a bare name."""
    prefix, sep, _ = value.partition(":")
    return value.startswith("docker://") or (bool(sep) and prefix in FILE_TRANSPORTS)


def parse_transport(value: str, *, default: str = STORE) -> TransportRef:
    """Parse ``value``; a string with no known transport prefix names ``default``."""
    if not value:
        raise InvalidArgument("an image or transport reference is required")
    if value.startswith("docker://"):
        ref = value[len("docker://") :]
        if not ref:
            raise InvalidArgument(f'"{value}": a registry reference is missing after docker://')
        return TransportRef(DOCKER, reference=ref)
    prefix, sep, rest = value.partition(":")
    if sep and prefix in _REFUSED:
        raise InvalidArgument(f'"{value}": {_REFUSED[prefix]}')
    if sep and prefix in FILE_TRANSPORTS:
        if prefix == DIR:
            path, ref = rest, ""
        else:
            path, _, ref = rest.partition(":")
        if not path:
            raise InvalidArgument(f'"{value}": a path is missing after "{prefix}:"')
        if prefix == DOCKER_ARCHIVE and ref:
            Reference.parse(ref)  # invalid docker references are refused up front
        return TransportRef(prefix, path=path, reference=ref)
    if sep and prefix == "docker":  # the image "docker" with a tag (podman's), or a typo
        try:
            Reference.parse(value)
        except InvalidArgument:
            raise InvalidArgument(
                f'"{value}": not an image name; registry references are written docker://REF'
            ) from None
    if sep and rest.startswith(("/", "./", "../")) and not rest.startswith("//"):
        # NAME:/path is no image name (a port is digits): a transport kiln does not know
        raise InvalidArgument(
            f'"{value}": unknown transport "{prefix}": use docker://, '
            + ", ".join(f"{t}:" for t in sorted(FILE_TRANSPORTS))
        )
    if default == DOCKER:
        return TransportRef(DOCKER, reference=value)
    return TransportRef(STORE, reference=value)


def registry_reference(value: str) -> str:
    """The registry reference ``value`` names, ``docker://`` optional (what a registry pull
    or push is given): the one parse of :func:`parse_transport`, refusing other transports."""
    ref = parse_transport(value, default=DOCKER)
    if ref.transport != DOCKER:
        raise InvalidArgument(f'"{value}": a registry reference (docker://REF) is needed here')
    return ref.reference


__all__ = [
    "DIR",
    "DOCKER",
    "DOCKER_ARCHIVE",
    "FILE_TRANSPORTS",
    "OCI",
    "OCI_ARCHIVE",
    "STORE",
    "TransportRef",
    "names_transport",
    "parse_transport",
    "registry_reference",
]
