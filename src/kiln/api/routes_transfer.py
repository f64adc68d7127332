"""Docker routes that move images: pull/import, push, save, load, search, commit.

The use cases these routes run (transports, archives, the registry client, containers)
are imported on the worker thread that first runs one, not with the module: they are
most of what ``kiln serve`` would import at start, and a server that only answers
inspects and lists never needs them (start-up: exec to ``/_ping`` answering).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiln.errors import InvalidArgument, NotFound, Unauthorized
from kiln.oci import Reference
from kiln.ops import images as ops
from kiln.ops.events import Event
from kiln.ops.options import PullRequest, RegistryOptions

from . import shapes
from .errors import NoSuchImage
from .params import docker_bool, qbool, qfilters, qhas, qint, qlist, qstr
from .registry_auth import loopback_registry, push_pull_options
from .render import progress_message
from .streaming import Handoff, Reply, StreamedOp, StreamWriter
from .uploads import spool_body
from .wiring import config_of, context_for, run_op


def pull_reference(from_image: str, tag: str) -> str:
    if "@" in from_image:
        return from_image
    if tag:
        if tag.startswith("sha256:"):
            return f"{from_image}@{tag}"
        last = from_image.rsplit("/", 1)[-1]
        base = from_image.rsplit(":", 1)[0] if ":" in last else from_image
        return f"{base}:{tag}"
    return from_image


async def create_image(request: Request) -> Reply:
    q = request.query_params
    if q.get("fromImage"):
        return await _pull(request, docker_pull_request(request))
    if q.get("fromSrc"):
        return await _import(request)
    raise InvalidArgument('give "fromImage" to pull an image or "fromSrc" to import one')


def docker_pull_request(request: Request) -> PullRequest:
    """``POST /images/create?fromImage=...`` as a pull: always from a registry, every tag
    when neither ``tag`` nor ``fromImage`` names one (dockerd's ``docker pull -a``,
    docker-py's ``all_tags=True``; the docker CLI and docker-py send a tag otherwise);
    ``platform`` (API 1.32+, ``os/arch[/variant]``) picks an image from a manifest list,
    and one that does not parse is a 400 before anything is pulled."""
    q = request.query_params
    image = q["fromImage"]
    all_tags = "tag" not in q and "@" not in image and ":" not in image.rsplit("/", 1)[-1]
    reference = pull_reference(image, qstr(q, "tag"))
    return PullRequest.of(
        f"docker://{reference}",
        platform=qstr(q, "platform") or None,
        all_tags=all_tags,
        options=push_pull_options(request, reference=reference),
    )


async def _pull(request: Request, pull_request: PullRequest) -> Reply:

    config = config_of(request)
    reference, all_tags = pull_request.source.removeprefix("docker://"), pull_request.all_tags
    # dockerd writes nothing before the image is found, so a missing image or refused
    # credentials answer with an error status (which docker-py raises), not a 200 whose
    # stream ends in an error; podman's "Trying to pull" lines are left out for that
    repo, _, tag = reference.rpartition(":") if "@" not in reference else (reference, "", "")
    if "/" in tag or not repo:
        repo, tag = reference, "" if all_tags else "latest"

    # what the name pointed at before: dockerd says "up to date" when the pull leaves it so
    before: list[str | None] = []

    def work(h: Handoff):
        from kiln.ops.file_transfer import pull  # start-up: see the module docstring

        with context_for(config, h) as ctx:
            if not all_tags:
                before.append(ops.image_id_of(ctx, shapes.docker_name(reference)))
            try:
                return pull(ctx, pull_request)
            except Unauthorized as exc:
                # dockerd's answer; a 401 would make the docker CLI prompt for a login
                # (and wait forever on a stdin that is not a terminal)
                raise NotFound(
                    f"pull access denied for {repo}, repository does not exist or may "
                    f"require 'docker login': {exc}"
                ) from None

    said: list[bool] = []

    def first() -> list[dict]:
        if said:
            return []
        said.append(True)
        return [{"status": f"Pulling from {_path_of(repo)}", "id": tag or "latest"}]

    def event(e: Event) -> list[dict]:
        if e.message.startswith("Trying to pull "):
            return []
        objs = progress_message(e)
        return [*first(), *objs] if objs else []

    def done(result: Any) -> list[dict]:
        name = shapes.familiar(result.names[0]) if result.names else reference
        if all_tags:
            name = repo
        was = before[0] if before else None
        same = was is not None and was == getattr(result, "image_id", None)
        status = "Image is up to date for" if same else "Downloaded newer image for"
        return [
            *first(),
            {"status": f"Digest: {result.digest}"},
            {"status": f"Status: {status} {name}"},
        ]

    return StreamedOp(work, event, done)


def _path_of(repo: str) -> str:
    """The repository's path, as dockerd's "Pulling from" line shows it (``library/busybox``,
    ``team/app`` of ``registry:5000/team/app``)."""
    try:
        return Reference.parse(repo).path
    except InvalidArgument:
        return repo


async def _import(request: Request) -> Reply:

    q = request.query_params
    source, repo, tag = q["fromSrc"], qstr(q, "repo"), qstr(q, "tag")
    reference = shapes.docker_name(f"{repo}:{tag}" if tag else repo) if repo else None
    changes, message, platform = qlist(q, "changes"), qstr(q, "message"), qstr(q, "platform")
    config = config_of(request)
    body = await spool_body(request, config.scratch_dir()) if source == "-" else None

    def work(h: Handoff):
        from kiln.ops.archives import import_image  # start-up: see the module docstring

        try:
            with context_for(config, h) as ctx:
                return import_image(
                    ctx,
                    body if body is not None else source,
                    reference,
                    changes,
                    message,
                    platform or None,
                    podman_history=False,  # dockerd's history entry (and no environment)
                )
        finally:
            if body is not None:
                body.close()

    def done(rec: Any) -> list[dict]:
        return [{"status": shapes.with_sha(rec.id)}]

    return StreamedOp(work, lambda e: [], done)


async def push_image(request: Request) -> Reply:

    name = request.path_params["name"]
    tag = qstr(request.query_params, "tag")
    image = pull_reference(name, tag)
    options = push_pull_options(request, reference=image)
    config = config_of(request)
    ref = Reference.parse(image)  # a name that cannot be pushed is a 400 before the stream
    # neither the query nor the name has a tag: every tag of the repository, as dockerd
    # (docker push --all-tags; docker-py's push(repository))
    all_tags = not tag and not ref.digest and ":" not in name.rsplit("/", 1)[-1]
    repo = image.split("@", 1)[0]
    repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo

    def work(h: Handoff):
        from kiln.ops.file_transfer import push  # start-up: see the module docstring

        with context_for(config, h) as ctx:
            if all_tags:
                names = ops.repository_names(ctx, ref.name)
            else:
                names = [image] if ops.image_exists(ctx, image) else []
            # dockerd's answers, in the stream
            if not names and not all_tags and ops.repository_names(ctx, ref.name):
                raise NotFound(f"tag does not exist: {image}")
            if not names:
                raise NotFound(f"An image does not exist locally with the tag: {repo}")
            return [(n, push(ctx, n, f"docker://{n}", options=options)) for n in names]

    def shown_tag(pushed: str) -> str:
        if tag:
            return tag
        return pushed.rsplit(":", 1)[-1] if ":" in pushed.rsplit("/", 1)[-1] else "latest"

    def done(pushed: list[tuple[str, Any]]) -> list[dict]:
        out: list[dict] = []
        for pushed_name, result in pushed:
            size = getattr(result, "manifest_size", 0)  # a file transport has no manifest
            shown = shown_tag(pushed_name)
            out += [
                {"status": f"{shown}: digest: {result.digest} size: {size}"},
                {
                    "progressDetail": {},
                    "aux": {"Tag": shown, "Digest": result.digest, "Size": size},
                },
            ]
        return out

    # dockerd's first line, sent before the registry is asked: a failure (refused
    # credentials included) is then in the stream, as with dockerd, never a 401 that
    # would make the docker CLI prompt for a login
    first = {"status": f"The push refers to repository [{name}]"}
    return StreamedOp(work, progress_message, done, preamble=[first])


async def _require_images(request: Request, names: list[str]) -> None:

    for name in names:
        if not await run_op(request, functools.partial(_image_exists, ops, name)):
            raise NoSuchImage(name)


def _image_exists(ops: Any, name: str, ctx: Any) -> bool:
    return ops.image_exists(ctx, name)


def save_response(
    request: Request,
    names: list[str],
    format: str = "docker-archive",
    compress: bool = False,
    name_as: Callable[[str], str] | None = None,
) -> Reply:
    """The archive of ``names``, streamed as it is written, never spooled; ``oci-dir``: the
    layout's tar, its layers gzipped with ``compress`` (podman's ``save --compress``).
    ``name_as``: how the archive writes names (``kiln.ops.archives.save``)."""

    config = config_of(request)

    def work(h: Handoff):
        from kiln.ops.archives import save  # start-up: see the module docstring

        out = StreamWriter(h)
        with context_for(config, h) as ctx:
            save(ctx, names, cast(BinaryIO, out), format=format, compress=compress,
                 dir_as_tar=True, name_as=name_as)  # fmt: skip
        out.flush()

    return StreamedOp(work, media_type="application/x-tar", render_error=lambda exc: [])


async def get_image(request: Request) -> Reply:
    name = request.path_params["name"]
    await _require_images(request, [name])
    # RepoTags as dockerd 20.10 writes them (base:1, not docker.io/library/base:1)
    return save_response(request, [name], name_as=shapes.familiar)


async def get_images(request: Request) -> Reply:
    names = [n for v in request.query_params.getlist("names") for n in v.split(",") if n]
    if not names:
        raise InvalidArgument('query parameter "names" is required: the images to export')
    await _require_images(request, names)
    return save_response(request, names, name_as=shapes.familiar)


async def load_images(request: Request) -> Reply:

    config = config_of(request)
    quiet = docker_bool(request.query_params, "quiet", True)
    body = await spool_body(request, config.scratch_dir())

    def work(h: Handoff):
        from kiln.ops.archives import load  # start-up: see the module docstring

        try:
            with context_for(config, h) as ctx:
                # a short name (base:1, as docker save writes it) is on Docker Hub, as dockerd
                # loads it; kiln's command line and the libpod routes, as podman, put it
                # under localhost/
                return load(ctx, body, docker_hub=True)
        finally:
            body.close()

    def done(result: Any) -> list[dict]:
        lines = []
        for img in result.images:
            for n in img.names:
                lines.append(f"Loaded image: {shapes.familiar(n)}\n")
            if not img.names:
                lines.append(f"Loaded image ID: {shapes.with_sha(img.id)}\n")
        return [{"stream": line} for line in lines]

    del quiet  # dockerd prints the loaded names either way
    # dockerd answers 200 and puts a failure in the stream (docker-py raises ImageLoadError)
    return StreamedOp(work, lambda e: [], done, streams_failure=lambda exc: True)


def search_item(item: Any) -> dict[str, Any]:
    def get(*keys: str, default: Any = None) -> Any:
        for k in keys:
            v = item.get(k) if isinstance(item, dict) else getattr(item, k, None)
            if v is not None:
                return v
        return default

    return {
        "name": str(get("name", "Name", default="")),
        "description": str(get("description", "Description", default="")),
        "star_count": int(get("stars", "star_count", "Stars", default=0) or 0),
        "is_official": bool(get("official", "is_official", "Official", default=False)),
        "is_automated": False,
    }


async def search(request: Request, libpod: bool = False) -> list[dict[str, Any]]:
    q = request.query_params
    term = qstr(q, "term")
    if not term:
        raise InvalidArgument('query parameter "term" is required: what to search for')
    limit = qint(q, "limit", 25) or 25
    if limit < 0:
        raise InvalidArgument(f'invalid value for query parameter "limit": "{limit}"')
    filters = qfilters(q)
    for f in filters:
        key = f.partition("=")[0]
        if key not in ("is-official", "stars", "is-automated"):
            raise InvalidArgument(f'invalid filter "{key}"')

    tls = qbool(q, "tlsVerify", True) if qhas(q, "tlsVerify") else None
    if tls is None and loopback_registry(term):
        tls = False

    def run(ctx):
        from kiln.ops.registry import search as do_search  # start-up: see the module docstring

        options = RegistryOptions(tls_verify=tls, docker_short_names=not libpod)
        return do_search(ctx, term, limit=limit, options=options)

    items = await run_op(request, run)
    out = [search_item(i) for i in items]
    for f in filters:
        key, _, value = f.partition("=")
        if key == "stars":
            try:
                n = int(value)
            except ValueError:
                raise InvalidArgument(f'invalid filter "stars={value}"') from None
            out = [i for i in out if i["star_count"] >= n]
        elif key == "is-official":
            out = [i for i in out if i["is_official"] == (value.lower() in ("true", "1"))]
    return out[:limit]


async def search_images(request: Request) -> Response:
    return JSONResponse(await search(request))


async def commit(request: Request) -> Response:

    q = request.query_params
    container = qstr(q, "container")
    if not container:
        raise InvalidArgument('query parameter "container" is required: the container to commit')
    libpod = bool(request.scope.get("kiln.libpod"))
    repo, tag = qstr(q, "repo"), qstr(q, "tag")
    image = (f"{repo}:{tag}" if tag else repo) or None
    if image and not libpod:
        image = shapes.docker_name(image)
    changes = qlist(q, "changes")
    author, comment = qstr(q, "author") or None, qstr(q, "comment") or None
    (qbool if libpod else docker_bool)(q, "pause", True)  # kiln's containers never run

    def run(ctx):
        from kiln.ops.containers import commit_container  # start-up: see the module docstring

        try:
            return commit_container(
                ctx, container, image, changes=changes, author=author, comment=comment
            )
        except NotFound as exc:
            if "container" in str(exc).lower():
                raise NotFound(f"No such container: {container}") from exc
            raise

    record = await run_op(request, run)
    if libpod:  # podman's IDResponse: the bare ID
        return JSONResponse({"Id": shapes.bare(record.id)})
    return JSONResponse({"Id": shapes.with_sha(record.id)}, status_code=201)


routes = [
    Route("/images/create", create_image, methods=["POST"]),
    Route("/images/get", get_images, methods=["GET"]),
    Route("/images/load", load_images, methods=["POST"]),
    Route("/images/search", search_images, methods=["GET"]),
    Route("/commit", commit, methods=["POST"]),
    Route("/libpod/commit", commit, methods=["POST"]),
    Route("/images/{name:path}/push", push_image, methods=["POST"]),
    Route("/images/{name:path}/get", get_image, methods=["GET"]),
]

__all__ = ["docker_pull_request", "pull_reference", "routes", "save_response", "search"]
