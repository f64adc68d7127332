"""The names of the file transports (``oci-archive:/x.tar``), apart from the code that
reads them, so that telling one from an image name costs no imports."""

from __future__ import annotations

OCI = "oci"
OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"
DIR = "dir"
#: the transports that name a file or directory
FILE_TRANSPORTS = frozenset({OCI, OCI_ARCHIVE, DOCKER_ARCHIVE, DIR})


def names_file_transport(value: str) -> bool:
    """Whether ``value`` is ``<file transport>:<path>...`` (``FROM oci-archive:/x.tar``)."""
    prefix, sep, rest = value.partition(":")
    return bool(sep) and prefix in FILE_TRANSPORTS and bool(rest)
