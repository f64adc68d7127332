"""The ``io.podman`` service put together: kiln's description of podman 1.x/2.x's image
methods (``io.podman.varlink`` beside this module) served by the method mixins.

The mixins import the service's helpers; this module imports them all, so nothing
imports back.
"""

from __future__ import annotations

import os
import threading

import varlink

from kiln import __version__
from kiln.ops.config import Config

from .varlink_images import ImageMethods
from .varlink_service import INTERFACE, PodmanImageService
from .varlink_transfer import TransferMethods


def make_service(config: Config, stopping: threading.Event | None = None) -> varlink.Service:
    """A ``varlink.Service`` serving ``io.podman`` over ``config``'s store."""

    class PodmanImages(ImageMethods, TransferMethods, PodmanImageService):
        pass

    service = varlink.Service(
        vendor="kiln",
        product="kiln image service (podman io.podman image methods)",
        version=__version__,
        url="",
        interface_dir=os.path.dirname(os.path.abspath(__file__)),
    )
    handler = PodmanImages(config, stopping)
    service._set_interface(INTERFACE, handler)  # the package's way to register an instance
    return service
