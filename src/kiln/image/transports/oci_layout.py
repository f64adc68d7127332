"""The ``oci:DIR[:REF]`` transport: an OCI image layout directory.

Source: the image an ``index.json`` entry names (its ``ref.name`` annotation or
digest; an index entry is followed to the platform's manifest). Sink: the layout,
each written image getting an ``index.json`` entry named ``REF``. The bytes of the
layout are :class:`kiln.store.oci_layout.OCILayout`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from kiln.errors import InvalidArgument
from kiln.image.model import SourceImage, open_image
from kiln.image.transport_names import OCI
from kiln.oci.platform import Platform
from kiln.store.oci_layout import REF_NAME, OCILayout

if TYPE_CHECKING:
    from kiln.image.copy import CopyOptions

NAME = OCI
HOLDS_LISTS = True
SINGLE_IMAGE = False
COPY_DEFAULTS: CopyOptions = {}


def open_oci_layout(
    path: str, ref: str | None = None, platform: Platform | None = None
) -> SourceImage:
    """The image named ``ref`` (ref.name annotation or digest) in an OCI layout directory."""
    layout = OCILayout(path)
    return open_image(layout, layout.resolve(ref), platform, (ref,) if ref else ())


def ref_names(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The name an ``index.json`` entry gives its image (its ``ref.name``), if any."""
    name = annotations.get(REF_NAME)
    return (name,) if name else ()


def open_source(
    path: str, ref: str = "", *, platform: Platform | None = None, tmp_dir: str | None = None
) -> SourceImage:
    return open_oci_layout(path, ref or None, platform)


def all_images(path: str, *, tmp_dir: str | None = None) -> list[SourceImage]:
    """Every image entry of the layout's index.json (named by its ref.name, if any)."""
    layout = OCILayout(path)
    return [open_image(layout, d, None, ref_names(d.annotations)) for d in layout.index().manifests]


@contextmanager
def open_sink(target: str | BinaryIO) -> Iterator[OCILayout]:
    if not isinstance(target, str):
        raise InvalidArgument("an OCI layout is a directory: give it as a path")
    yield OCILayout(target, create=True)


def sink_names(ref: str, stored_names: Sequence[str]) -> list[str]:
    """An image written as ``oci:DIR:REF`` gets the entry name REF; without one, none."""
    return [ref] if ref else []
