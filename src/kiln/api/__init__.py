"""REST server: Docker Engine API and libpod-style routes over :mod:`kiln.ops`.

Every route parses its request, calls the same ``kiln.ops`` use case the CLI
calls, and renders the result in the shape Docker (``/v1.xx/...``) or podman
(``/libpod/...``) clients expect. Errors from :mod:`kiln.errors` become 4xx
answers with ``{"message": ...}`` bodies.

May import: kiln.ops and the layers below it, starlette, uvicorn.
Must not import: kiln.cli, click, rich, httpx.
"""
