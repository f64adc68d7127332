"""A remote client's pull source or push destination names a registry, never a path.

``kiln pull oci:/x`` and ``kiln push img dir:/y`` read and write the files of the user
who runs them. Through the API the same words would name files on the server's disk, a
disk the client has no business reading or writing: podman's server refuses any transport
but ``docker`` in ``/libpod/images/pull``'s ``reference``, ``/libpod/images/{name}/push``'s
``destination`` and a manifest list's push, with a 400 in these words, and so does kiln.
A name without a transport, or one podman does not know (``fedora:latest``), is a
registry's. The varlink ``io.podman`` methods keep podman 1.x's reading of paths (a
local socket, the server's own user): this rule is the REST API's.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from kiln.errors import InvalidArgument


def _registry_reference(value: str) -> str:
    # start-up: the transport parser brings the image package; on a worker thread
    from kiln.ops.transports import DOCKER, parse_transport

    ref = parse_transport(value, default=DOCKER)
    if ref.transport != DOCKER:
        raise InvalidArgument(
            f'unsupported transport {ref.transport} in "{value}": only docker transport is '
            "supported (a client cannot name files on the server)"
        )
    return ref.reference


async def registry_reference(value: str) -> str:
    """The registry reference ``value`` names (``docker://`` optional), or a 400."""
    return await run_in_threadpool(_registry_reference, value)


__all__ = ["registry_reference"]
