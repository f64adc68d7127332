"""libpod-style image routes (``/libpod/images/...``) in the shapes podman 4.3's bindings decode.

Pull, push, load and import import their use cases on their worker threads, as
:mod:`kiln.api.routes_transfer` explains (start-up).
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kiln.errors import Conflict, InvalidArgument, NotFound
from kiln.ops import images as ops
from kiln.ops.context import Context
from kiln.ops.options import PullRequest
from kiln.ops.pull_options import platform_choice, retry_values
from kiln.util.choices import PullPolicy

from . import shapes
from .errors import error_body, image_lookup
from .libpod_filters import split_filters
from .listing_cache import listing_response
from .params import bad, qbool, qfilters, qhas, qint, qlist, qstr
from .registry_auth import loopback_registry, push_pull_options
from .registry_only import registry_reference
from .routes_images import tag_image, target_name
from .routes_transfer import _require_images, save_response, search
from .streaming import Handoff, Reply, StreamedOp
from .uploads import spool_body
from .versions import version_at_least
from .wiring import config_of, context_for, run_op, run_read

DIGEST_IN_PUSH_STREAM = "4.6.0"  # the libpod version whose push stream ends with the digest
_ARCHIVE_FORMATS = {
    "docker-archive": "docker-archive",
    "oci-archive": "oci-archive",
    "oci-dir": "oci-dir",  # the directory's tar, which podman's client unpacks
    "docker-dir": "docker-dir",
    "": "oci-archive",  # podman's default here (its CLI sends --format, docker-archive)
}


async def list_images(request: Request) -> Response:

    all_ = qbool(request.query_params, "all")
    filters = qfilters(request.query_params)

    passed, checks = split_filters(filters)

    def make(ctx: Context) -> list:
        summaries = ops.list_images(ctx, all=all_, filters=passed)
        return [shapes.libpod_summary(s) for s in summaries if all(c(s) for c in checks)]

    return await listing_response(request, ("libpod", all_, *filters), filters, make)


async def inspect_image(request: Request) -> Response:

    name = request.path_params["name"]
    with image_lookup(name):
        data = await run_read(request, lambda ctx: ops.inspect_image(ctx, name))
    return JSONResponse(shapes.libpod_inspect(data))


async def image_exists(request: Request) -> Response:

    name = request.path_params["name"]
    if await run_read(request, lambda ctx: ops.image_exists(ctx, name)):
        return Response(status_code=204)
    raise NotFound(f"{name}: image not known")


async def image_history(request: Request) -> Response:

    name = request.path_params["name"]
    with image_lookup(name):
        entries = await run_op(request, lambda ctx: ops.history(ctx, name))
    return JSONResponse(shapes.libpod_history(entries))


async def image_tree(request: Request) -> Response:

    name = request.path_params["name"]
    what = qbool(request.query_params, "whatrequires")
    with image_lookup(name):
        text = await run_op(request, lambda ctx: ops.tree(ctx, name, what_requires=what))
    return JSONResponse({"Tree": text})


async def image_changes(request: Request) -> Response:

    name = request.path_params["name"]
    parent = qstr(request.query_params, "parent") or None
    # podman's diffType: all (the default) and image name an image here; container a
    # container, which this route of kiln's never names
    diff_type = qstr(request.query_params, "diffType")
    if diff_type not in ("", "all", "image", "container"):
        raise bad("diffType", diff_type, "use all, container or image")
    if diff_type == "container":
        raise NotFound(f"{name}: no such container")
    kinds = {"C": 0, "A": 1, "D": 2}
    with image_lookup(name):
        changes = await run_op(request, lambda ctx: ops.diff(ctx, name, parent))
    return JSONResponse([{"Path": path, "Kind": kinds.get(kind, 0)} for kind, path in changes])


async def untag_image(request: Request) -> Response:

    name = request.path_params["name"]
    q = request.query_params
    targets = [target_name(qstr(q, "repo"), qstr(q, "tag"))] if q.get("repo") else []
    with image_lookup(name):
        await run_op(request, lambda ctx: ops.untag(ctx, name, *targets))
    return created()


def created(status: int = 201) -> Response:
    """podman's answer without a body (tag, untag, a quiet push): a text/plain newline
    (dockerd's tag has no body)."""
    return PlainTextResponse("\n", status_code=status, media_type="text/plain; charset=us-ascii")


async def libpod_tag_image(request: Request) -> Response:
    await tag_image(request)
    return created()


def _remove_report(result: Any) -> tuple[dict[str, Any], int]:
    errors = [str(e) for e in result.errors]
    code = 0
    if result.errors:
        first = result.errors[0]
        code = 1 if isinstance(first, NotFound) else 2 if isinstance(first, Conflict) else 125
    report = {
        "Deleted": [shapes.bare(i) for i in result.deleted] or None,
        "Untagged": list(result.untagged) or None,
        "Errors": errors or None,
        "ExitCode": code,
    }
    return report, code


async def remove_images(request: Request) -> Response:

    q = request.query_params
    names = [n for v in qlist(q, "images") for n in v.split(",") if n]
    if "name" in request.path_params:
        names = [request.path_params["name"]]
    force, all_, ignore = qbool(q, "force"), qbool(q, "all"), qbool(q, "ignore")
    lists_only = qbool(q, "lookupManifest")  # podman manifest rm: lists, never their images
    result = await run_op(
        request,
        lambda ctx: ops.remove_images(
            ctx, names, force=force, all=all_, ignore=ignore, lists_only=lists_only
        ),
    )
    report, _code = _remove_report(result)
    if "name" in request.path_params and result.errors:
        raise result.errors[0]
    return JSONResponse(report)


async def prune_images(request: Request) -> Response:

    q = request.query_params
    all_ = qbool(q, "all")
    filters = []
    for item in qfilters(q):
        key, _, value = item.partition("=")
        if key == "dangling" and value.lower() in ("false", "0"):
            all_ = True
        elif key != "dangling":
            filters.append(item)
    result = await run_op(request, lambda ctx: ops.prune(ctx, all=all_, filters=filters))
    # podman sums the Sizes: the first entry carries the bytes that actually left the disk
    sizes = [{"Id": shapes.bare(i), "Size": 0} for i in result.removed]
    if sizes:
        sizes[0]["Size"] = result.bytes_freed
    return JSONResponse(sizes)


def _pull_policy(value: str) -> str:
    try:
        return PullPolicy.parse(value).value
    except InvalidArgument:
        raise InvalidArgument(
            f'invalid value for query parameter "policy": "{value}": '
            "use always, missing, never or newer"
        ) from None


def _retry_settings(q: QueryParams) -> dict[str, Any]:
    """``retry`` and ``retryDelay`` as ``RegistryOptions`` fields (none given: none)."""
    names = ('query parameter "retry"', 'query parameter "retryDelay"')
    return retry_values(qstr(q, "retry"), qstr(q, "retryDelay"), names)


def _stream_error(exc: BaseException) -> list[dict]:
    """A failure in the middle of a streamed pull or push, as podman's bindings read it."""
    return [{"error": error_body(exc, True)["message"]}]


def libpod_pull_request(request: Request) -> PullRequest:
    """``POST /libpod/images/pull``'s query and auth headers as a pull: ``reference`` (a
    registry's: :mod:`.registry_only` refuses any other transport), ``policy``, ``allTags``, ``quiet``,
    ``tlsVerify``, ``Arch``/``OS``/``Variant`` (podman's ``--arch``/``--os``/``--variant``),
    ``retry`` (retries after the first attempt, podman's ``--retry``), ``retryDelay`` (a Go
    duration: every wait, no backoff, as ``--retry-delay``) and X-Registry-Auth.

    Names are matched in any case (``kiln.api.params``), as podman's server matches them:
    podman 4's bindings send ``arch``, ``os``, ``variant`` and ``alltags``."""
    q = request.query_params
    reference = qstr(q, "reference")
    if not reference:
        raise InvalidArgument('query parameter "reference" is required: the image to pull')
    tls = qbool(q, "tlsVerify", True) if qhas(q, "tlsVerify") else None
    options = push_pull_options(request, tls).merged(**_retry_settings(q))
    return PullRequest.of(
        reference,
        policy=_pull_policy(qstr(q, "policy") or "always"),
        arch=qstr(q, "arch") or None,
        os=qstr(q, "os") or None,
        variant=qstr(q, "variant") or None,
        all_tags=bool(qbool(q, "allTags")),
        options=options,
        quiet=bool(qbool(q, "quiet")),
    )


async def pull_image(request: Request) -> Reply:

    pull_request = libpod_pull_request(request)
    await registry_reference(pull_request.source)
    quiet = pull_request.quiet
    config = config_of(request)

    def work(h: Handoff):
        from kiln.ops.file_transfer import pull  # start-up: see the module docstring

        with context_for(config, h) as ctx:
            return pull(ctx, pull_request)

    def event(e) -> list[dict]:
        if quiet or not e.message or e.kind == "result":
            return []
        return [{"stream": e.message + "\n"}]

    def done(r: Any) -> list[dict]:
        image_id = shapes.bare(r.image_id)
        ids = [shapes.bare(i) for i in (getattr(r, "ids", None) or [r.image_id])]
        return [{"images": ids, "id": image_id}]

    return StreamedOp(work, event, done, _stream_error, libpod=True)


async def push_image(request: Request) -> Reply:

    name = request.path_params["name"]
    q = request.query_params
    destination = "docker://" + await registry_reference(qstr(q, "destination") or name)
    tls = qbool(q, "tlsVerify", True) if qhas(q, "tlsVerify") else None
    options = push_pull_options(request, tls)
    fmt = qstr(q, "format") or None
    compression = qstr(q, "compressionFormat") or None  # podman's --compression-format
    # podman's --compress gzips the layers of a directory (dir:, oci:), which the API does
    # not write; a registry's layers are compressed anyway, so, as in podman, it changes nothing
    compress = qbool(q, "compress")
    # kiln's store keeps no signatures: every push is what removeSignatures asks for
    qbool(q, "removeSignatures")
    config = config_of(request)
    await _require_images(request, [name])

    def run(ctx: Context) -> Any:
        from kiln.ops.file_transfer import push  # start-up: see the module docstring

        return push(ctx, name, destination, format=fmt, compress=compress,
                    compression=compression, options=options)  # fmt: skip

    if qbool(q, "quiet", True):
        # podman's default (podman#14971: older clients read no stream): the push, then a
        # newline, or the error with its status; podman's client sends quiet either way
        await run_op(request, run)
        return created(200)

    def work(h: Handoff):
        with context_for(config, h) as ctx:
            return run(ctx)

    def event(e) -> list[dict]:
        return [{"stream": e.message + "\n"}] if e.message and e.kind != "result" else []

    # podman reads the pushed digest from a "manifestdigest" object since 4.6 (remote
    # --digestfile); older clients refuse any object without "stream" or "error" and would
    # call a successful push a failure
    with_digest = version_at_least(request.scope.get("kiln.api_version"), DIGEST_IN_PUSH_STREAM)

    def done(r: Any) -> list[dict]:
        return [{"manifestdigest": r.digest}] if with_digest else []

    return StreamedOp(work, event, done, _stream_error, libpod=True)


async def _list_tags(request: Request) -> list[dict[str, Any]]:
    """The tags of the repository ``term`` names, one entry each (podman's NAME and TAG)."""
    q = request.query_params
    term = qstr(q, "term")
    if not term:
        raise InvalidArgument('query parameter "term" is required: the repository to list')
    limit = qint(q, "limit", 0) or 0
    tls = qbool(q, "tlsVerify", True) if qhas(q, "tlsVerify") else None
    if tls is None and loopback_registry(term):
        tls = False
    options = push_pull_options(request, tls)

    def run(ctx):
        from kiln.ops.registry import search as do_search  # start-up: see the module docstring

        return do_search(ctx, term, limit=max(limit, 0), list_tags=True, options=options)

    tags = await run_op(request, run)
    return [
        {"Index": t.name.split("/", 1)[0], "Name": t.name, "Description": "", "Stars": 0,
         "Official": "", "Automated": "", "Tag": t.tag}
        for t in tags
    ]  # fmt: skip


def _archive_format(request: Request) -> tuple[str, bool]:
    """``format`` and ``compress`` (podman's ``save --format``, ``--compress``): compress
    gzips the layers of a directory format, as podman's does (its CLI sends it with
    docker-dir only); an archive's are as ``docker save`` (docker-archive) or the store
    (oci-archive) has them, which podman's CLI refuses to combine with it, so that is a
    400. ``ociAcceptUncompressedLayers`` (``--uncompressed``): kiln's OCI output always
    keeps the stored layers as they are, which is what it asks for."""
    q = request.query_params
    value = qstr(q, "format")
    if value not in _ARCHIVE_FORMATS:
        raise InvalidArgument(
            f'invalid value for query parameter "format": "{value}": '
            "kiln serves docker-archive, oci-archive, oci-dir or docker-dir"
        )
    fmt = _ARCHIVE_FORMATS[value]
    compress = qbool(q, "compress")
    if compress and not fmt.endswith("-dir"):
        raise InvalidArgument(
            f'invalid value for query parameter "compress": "{qstr(q, "compress")}": '
            f"compress applies to the directory formats (docker-dir, oci-dir), not to {fmt}"
        )
    qbool(q, "ociAcceptUncompressedLayers")  # a bad value is a 400; see above
    return fmt, compress


async def get_image(request: Request) -> Reply:
    name = request.path_params["name"]
    fmt, compress = _archive_format(request)
    await _require_images(request, [name])
    return save_response(request, [name], fmt, compress)


async def export_images(request: Request) -> Reply:
    names = [n for v in qlist(request.query_params, "references") for n in v.split(",") if n]
    if not names:
        raise InvalidArgument('query parameter "references" is required: the images to export')
    fmt, compress = _archive_format(request)
    await _require_images(request, names)
    return save_response(request, names, fmt, compress)


async def load_images(request: Request) -> Response:

    config = config_of(request)
    body = await spool_body(request, config.scratch_dir())

    def run(ctx):
        from kiln.ops.archives import load  # start-up: see the module docstring

        try:
            return load(ctx, body)
        finally:
            body.close()

    result = await run_op(request, run)
    names = [n for img in result.images for n in img.names]
    names += [shapes.with_sha(img.id) for img in result.images if not img.names]
    return JSONResponse({"Names": names})


async def import_image(request: Request) -> Response:

    q = request.query_params
    config = config_of(request)
    url = qstr(q, "url")
    # podman import --arch/--os/--variant (the rest from the host's), refused before the body
    picked = platform_choice(None, qstr(q, "architecture") or None, qstr(q, "os") or None,
                             qstr(q, "variant") or None)  # fmt: skip
    platform = str(picked) if picked is not None else None
    body = None if url else await spool_body(request, config.scratch_dir())
    reference = qstr(q, "reference") or None
    changes = qlist(q, "changes")
    message = qstr(q, "message")

    def run(ctx):
        from kiln.ops.archives import import_image as import_  # start-up: see the module docstring

        try:
            # as podman 4.3's service imports (import_image's defaults)
            return import_(ctx, url or body, reference, changes, message, platform)
        finally:
            if body is not None:
                body.close()

    record = await run_op(request, run)
    return JSONResponse({"Id": shapes.bare(record.id)})


async def search_images(request: Request) -> Response:
    if qbool(request.query_params, "listTags"):  # podman search --list-tags REPOSITORY
        return JSONResponse(await _list_tags(request))
    items = await search(request, libpod=True)
    return JSONResponse(
        [
            {
                "Index": i["name"].split("/", 1)[0] if "/" in i["name"] else "docker.io",
                "Name": i["name"],
                "Description": i["description"],
                "Stars": i["star_count"],
                "Official": "[OK]" if i["is_official"] else "",
                "Automated": "",
                "Tag": "",
            }
            for i in items
        ]
    )


async def not_found(request: Request) -> Response:
    kind = request.path_params.get("kind", "object")
    name = request.path_params.get("name", "")
    what = {
        "containers": "container",
        "pods": "pod",
        "volumes": "volume",
        "networks": "network",
    }.get(kind, kind)
    raise NotFound(f"{name}: no such {what}")


routes = [
    Route("/libpod/images/json", list_images, methods=["GET"]),
    Route("/libpod/images/remove", remove_images, methods=["DELETE"]),
    Route("/libpod/images/prune", prune_images, methods=["POST"]),
    Route("/libpod/images/pull", pull_image, methods=["POST"]),
    Route("/libpod/images/load", load_images, methods=["POST"]),
    Route("/libpod/images/import", import_image, methods=["POST"]),
    Route("/libpod/images/search", search_images, methods=["GET"]),
    Route("/libpod/images/export", export_images, methods=["GET"]),
    Route("/libpod/images/{name:path}/json", inspect_image, methods=["GET"]),
    Route("/libpod/images/{name:path}/exists", image_exists, methods=["GET"]),
    Route("/libpod/images/{name:path}/history", image_history, methods=["GET"]),
    Route("/libpod/images/{name:path}/tree", image_tree, methods=["GET"]),
    Route("/libpod/images/{name:path}/changes", image_changes, methods=["GET"]),
    Route("/libpod/images/{name:path}/tag", libpod_tag_image, methods=["POST"]),
    Route("/libpod/images/{name:path}/untag", untag_image, methods=["POST"]),
    Route("/libpod/images/{name:path}/push", push_image, methods=["POST"]),
    Route("/libpod/images/{name:path}/get", get_image, methods=["GET"]),
    Route("/libpod/images/{name:path}", remove_images, methods=["DELETE"]),
    Route("/libpod/{kind}/{name:path}/json", not_found, methods=["GET"]),
    Route("/libpod/{kind}/{name:path}/exists", not_found, methods=["GET"]),
]

__all__ = ["routes"]
