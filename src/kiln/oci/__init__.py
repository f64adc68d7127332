"""OCI and Docker vocabulary: digests, media types, descriptors, manifests,
indexes, image config, references, platforms. Pure frozen data, no I/O.
Imports nothing from kiln but kiln.errors."""

from kiln.oci import media_types
from kiln.oci.blobs import BlobSink, BlobSource
from kiln.oci.config import Healthcheck, History, ImageConfig, RuntimeConfig
from kiln.oci.descriptor import Descriptor
from kiln.oci.digest import Digest, Digester
from kiln.oci.manifest import Index, Manifest, sniff_media_type
from kiln.oci.platform import Platform
from kiln.oci.reference import Reference

__all__ = [
    "BlobSink",
    "BlobSource",
    "Descriptor",
    "Digest",
    "Digester",
    "Healthcheck",
    "History",
    "ImageConfig",
    "Index",
    "Manifest",
    "Platform",
    "Reference",
    "RuntimeConfig",
    "media_types",
    "sniff_media_type",
]
