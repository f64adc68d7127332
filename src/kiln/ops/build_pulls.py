"""How a build gets the images its FROM and ``--from`` name that are not in the store:
through the registry use cases (``kiln.ops.registry.ensure_image``) with the build's
``RegistryOptions`` and pull policy, or a file transport (``FROM oci-archive:...``). A
pull inside a build stops with its siblings when the build is stopping."""

from __future__ import annotations

import threading
from typing import Any

from kiln.build.options import BuildOptions
from kiln.image.transport_names import names_file_transport
from kiln.ops.context import Context
from kiln.util.choices import PullPolicy

__all__ = ["puller"]


def puller(ctx: Context, opts: BuildOptions, stopping: threading.Event) -> Any:
    """``(ref, policy) -> image id`` for FROM and ``--from`` images, through the registry
    (with the build's ``RegistryOptions``: --tls-verify, --cert-dir, --authfile, --creds
    and an API client's credentials, as podman's).
    The registry code is imported on the first pull: a build from local images needs none."""
    # once the build is stopping (a stage failed, the caller cancelled), a pull's next event
    # of any kind raises Cancelled: a stage waiting on a long pull stops with its siblings,
    # one fetching a manifest or whose blobs are all there too
    pull_ctx = ctx.stopped_by(stopping, "the build was cancelled")

    def pull(ref: str, policy: str, wanted: str | None = None) -> str:
        # start-up: the request and the pulls' modules load on a build's first pull only
        from kiln.ops import transfer
        from kiln.ops.registry import ensure_image
        from kiln.registry.pull_request import PullRequest

        # asked with a platform, the executor found no local image of it: a local one of
        # another platform must not satisfy "missing"
        policy = PullPolicy(policy).for_platform(bool(wanted))
        plat = wanted or opts.platform or None
        request = PullRequest.of(ref, policy=policy, platform=plat, options=opts.registry)
        if names_file_transport(ref):  # FROM oci-archive:/x.tar and the like, as buildah
            return transfer.pull_image(pull_ctx, request).image_id
        return str(ensure_image(pull_ctx, request))

    return pull
