"""``POST /build`` (Docker) and ``POST /libpod/build`` over ``kiln.ops.build.build``.

The query string becomes a ``BuildOptions``; the body (a tar, maybe compressed)
is spooled to disk and extracted safely into a temporary directory that is
removed when the build ends, however it ends. Output streams as
``{"stream": ...}`` objects; the result as ``{"aux": {"ID": ...}}`` plus
Docker's "Successfully built/tagged" lines (podman: the tags and the bare ID).
A client that disconnects cancels the build.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiln.errors import InvalidArgument
from kiln.ops.builder import prune_build_cache, prune_until
from kiln.ops.events import OUTPUT, Event
from kiln.ops.options import MIN_MEMORY, RegistryOptions, RunSettings
from kiln.util.choices import Choice, ImageFormat, Isolation, NetworkMode, PullPolicy

from . import shapes
from .kept_lines import KeptLines
from .params import (
    bad,
    docker_bool,
    loads,
    qbool,
    qfilters,
    qint,
    qjson_map,
    qjson_str_list,
    qlabels,
    qlist,
    qstr,
)
from .registry_auth import build_registry_options
from .render import stream_message
from .streaming import Handoff, Reply, StreamedOp, docker_stream_error
from .uploads import check_tar_content_type, spool_body
from .wiring import config_of, context_for, run_op

# Docker's and podman's numeric spellings; every other word is the enum's (kiln.util.choices)
_NETWORK_CODES = {"": "host", "0": "host", "1": "none", "2": "host"}  # podman's policy codes
_ISOLATION_CODES = {"": "oci", "0": "oci", "1": "oci", "2": "chroot", "3": "oci", "4": "oci"}
# what a BuildKit client (DOCKER_BUILDKIT=1: version=2) prints: kiln has no BuildKit solver
_NO_BUILDKIT = (
    "kiln serve has no BuildKit (this build asked for builder version {!r}): build with "
    "the classic builder, DOCKER_BUILDKIT=0 docker build ..."
)


def _choice(q: QueryParams, name: str, vocabulary: type[Choice], default: str,
            codes: dict[str, str] | None = None) -> str:  # fmt: skip
    """Query parameter ``name`` as a word of ``vocabulary`` (400 naming the choices)."""
    if name not in q:
        return default
    value = q[name]
    try:
        return vocabulary.parse((codes or {}).get(value.strip().lower(), value))
    except InvalidArgument:
        raise bad(name, value, f"expected one of {', '.join(vocabulary.words())}") from None


def _extra_hosts(q: QueryParams) -> list[str]:
    out: list[str] = []
    for value in q.getlist("extrahosts"):
        if value.lstrip().startswith("["):
            out.extend(qjson_str_list(QueryParams([("extrahosts", value)]), "extrahosts"))
        else:
            out.extend(h for h in value.split(",") if h)
    return out


def _outputs(q: QueryParams) -> list[str]:
    value = q.get("outputs", "")
    if not value:
        return []
    if not value.lstrip().startswith("["):
        # podman's "type=local,dest=DIR": a path on the server, which an API client must
        # not choose; the image goes to kiln's store
        if value.strip().lower() in ("type=image", "type=moby"):
            return []
        raise bad("outputs", value, "kiln serve builds into its image store only (type=image)")
    data = loads("outputs", value)
    if not isinstance(data, list):
        raise bad("outputs", value, "expected a JSON list of {Type, Attrs} objects")
    for item in data:
        kind = item.get("Type") if isinstance(item, dict) else None
        if kind not in ("moby", "image"):
            raise bad("outputs", value, "only the image store (Type moby) is supported")
    return []  # the image goes to kiln's store, which is what "moby" means


def _ulimits(q: QueryParams) -> list[str]:
    """Docker's ``[{"Name","Soft","Hard"}]`` or podman's ``["nofile=1024:2048"]`` ->
    ``name=soft:hard`` (checked by the build's own parser)."""
    out: list[str] = []
    for value in q.getlist("ulimits"):
        if value.strip() in ("", "null"):  # docker 20.10's client sends null for none
            continue
        data = loads("ulimits", value) if value.lstrip().startswith("[") else [value]
        if not isinstance(data, list):
            raise bad("ulimits", value, "expected a JSON list")
        for item in data:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("Name"), str):
                soft, hard = item.get("Soft"), item.get("Hard")
                if not isinstance(soft, int) or not isinstance(hard, int):
                    raise bad("ulimits", value, f"{item['Name']}: Soft and Hard must be integers")
                out.append(f"{item['Name']}={soft}:{hard}")
            else:
                raise bad("ulimits", value, 'expected {"Name", "Soft", "Hard"} objects or strings')
    return out


def _refused(q: QueryParams, libpod: bool) -> None:
    """Parameters kiln serve will not honour for a remote caller: a 400 naming them."""
    if qjson_str_list(q, "addcaps"):
        raise bad(
            "addcaps",
            q["addcaps"],
            "kiln serve does not grant RUN steps capabilities beyond the default",
        )
    if qjson_str_list(q, "securityopt") and not libpod:
        # dockerd refuses them on Linux too; kiln would otherwise ignore them unsaid
        raise bad(
            "securityopt",
            q["securityopt"],
            "kiln serve does not set security options (seccomp, AppArmor, SELinux) on build",
        )
    if qjson_str_list(q, "secrets"):
        raise bad(
            "secrets",
            q["secrets"],
            "build secrets are files or variables of the server; pass the secret through "
            "kiln build --secret on the server's side, or not at all",
        )


def _platform(q: QueryParams) -> str | None:
    """podman sends ``/`` for "no platform"; several platforms are not built at once."""
    values = [p for v in q.getlist("platform") for p in v.split(",") if p.strip("/ ")]
    if len(values) > 1:
        raise bad("platform", q.get("platform", ""), "kiln builds one platform per request")
    return values[0] if values else None


def _pull_policy(q: QueryParams, libpod: bool) -> str:
    if libpod and "pullpolicy" in q:
        return _choice(q, "pullpolicy", PullPolicy, "missing")
    if "pull" in q:
        value = q["pull"].strip().lower()
        if value in ("", "0", "false") or (not libpod and not docker_bool(q, "pull")):
            return "missing"
        if value in ("1", "true", "always"):
            return "always"
        if libpod:
            return _choice(q, "pull", PullPolicy, "missing")
        try:  # a pull policy's name (kiln's and podman's words) ...
            return PullPolicy.parse(value)
        except InvalidArgument:  # ... else true, as dockerd reads any other value
            return "always"
    return "missing"


def _removal(q: QueryParams, libpod: bool) -> dict[str, bool]:
    """``rm`` (remove the build's working containers after a success) and ``forcerm``
    (after a failure too).

    Docker reads an empty ``rm`` as its default (true) and ``forcerm`` as implying ``rm``;
    podman reads both as plain booleans, default true. Without ``forcerm`` kiln removes
    them after a failure on either route, where dockerd keeps the failed step's container:
    dockerd's caller can list that container and remove it (``docker ps -a``, ``docker rm``),
    but kiln serves no container routes, so a working container left by a failed build
    would be out of every API client's reach, and its disk used until someone on the
    server ran ``kiln rm``. An explicit ``forcerm=0`` keeps them, as asked."""
    if libpod:
        return {"rm": qbool(q, "rm", True), "force_rm": qbool(q, "forcerm", True)}
    rm = docker_bool(q, "forcerm") or q.get("rm", "") == "" or docker_bool(q, "rm")
    return {"rm": rm, "force_rm": docker_bool(q, "forcerm", True)}


def build_options(q: QueryParams, libpod: bool) -> dict[str, Any]:
    """Every build query parameter -> BuildOptions fields (400 on a bad value)."""
    boolean = qbool if libpod else docker_bool
    if libpod:
        dockerfiles = qjson_str_list(q, "dockerfile")
    else:
        # one name, the first given, as dockerd reads it: docker-py sends a Dockerfile from
        # outside the context as two values, its name in the tar and then its text
        dockerfiles = qlist(q, "dockerfile")[:1]
        if not dockerfiles and "remote" not in q:
            dockerfiles = ["Dockerfile"]
    memory = qint(q, "memory")
    memswap = qint(q, "memswap")
    # docker 20.10's client sends shmsize=0 for "not given", as dockerd reads it
    shm = qint(q, "shmsize") or None
    if shm is not None and shm < 0:
        raise bad("shmsize", q["shmsize"], "must not be negative")
    for name, value in (("memory", memory), ("cpushares", qint(q, "cpushares"))):
        if value is not None and value < 0:
            raise bad(name, q[name], "must not be negative")
    if memory and memory < MIN_MEMORY:  # refused before any step, not by runc at the first RUN
        raise bad("memory", q["memory"], "the least memory limit is 6MB, as dockerd's")
    opts: dict[str, Any] = {
        "dockerfiles": dockerfiles,
        "dockerfile_in_context": True,  # never a path of the server's own file system
        "tags": qlist(q, "t"),
        "build_args": qjson_map(q, "buildargs", null_is_unset=not libpod),
        "labels": qlabels(q, "labels"),
        "target": qstr(q, "target") or None,
        "quiet": boolean(q, "q"),
        "no_cache": boolean(q, "nocache"),
        "pull": _pull_policy(q, libpod),
        **_removal(q, libpod),
        "memory": memory or None,
        "memory_swap": memswap or None,
        "cpu_shares": qint(q, "cpushares") or None,
        "cpu_period": qint(q, "cpuperiod") or None,
        "cpu_quota": qint(q, "cpuquota") or None,
        "cpuset_cpus": qstr(q, "cpusetcpus"),
        "shm_size": shm,
        "squash": boolean(q, "squash"),
        "network": _choice(q, "networkmode", NetworkMode, "host", _NETWORK_CODES),
        "platform": _platform(q),
        "add_hosts": _extra_hosts(q),
        "outputs": _outputs(q),
        # REF or type=registry,ref=REF / type=local,src=DIR, as --cache-from (kiln.ops.build_share)
        "cache_from": qjson_str_list(q, "cachefrom"),
        "ulimits": _ulimits(q),
        "cap_drop": qjson_str_list(q, "dropcaps"),
        "dns": qjson_str_list(q, "dnsservers"),
        "dns_options": qjson_str_list(q, "dnsoptions"),
        "dns_search": qjson_str_list(q, "dnssearch"),
    }
    _refused(q, libpod)
    if libpod:
        if "annotations" in q:
            opts["annotations"] = qlabels(q, "annotations")
        opts["layers"] = qbool(q, "layers", True)
        jobs = qint(q, "jobs")
        if jobs is not None:
            if jobs < 1:
                raise bad("jobs", q["jobs"], "must be at least 1")
            opts["jobs"] = jobs
        opts["isolation"] = _choice(q, "isolation", Isolation, "oci", _ISOLATION_CODES)
        opts["image_format"] = _choice(q, "outputformat", ImageFormat, "oci")
        opts["cache_to"] = qjson_str_list(q, "cacheto")
        ts = qint(q, "timestamp")
        if ts is not None:
            opts["timestamp"] = ts
    else:
        opts["image_format"] = "docker"
        if qstr(q, "isolation") not in ("", "default"):  # dockerd on Linux: the default only
            raise bad("isolation", q["isolation"], 'unsupported isolation: use "default"')
        opts["image_per_step"] = True  # dockerd's classic builder: Parent is the last step
        opts["tags"] = [shapes.docker_name(t) for t in opts["tags"]]
        if q.get("version", "1") not in ("1", ""):
            raise InvalidArgument(_NO_BUILDKIT.format(q["version"]))
    remote = qstr(q, "remote")
    if remote:
        # a client names a repository or a tar by URL; never a file on the server's disk
        from kiln.ops.build_inputs import is_git_context  # start-up: see _run

        git = is_git_context(remote) and not remote.startswith("file://")
        if not (git or remote.startswith(("http://", "https://"))):
            raise bad(
                "remote", remote, "kiln builds from a git repository or an http(s) URL of a tar"
            )
        opts["context"] = remote
    return opts


async def build(request: Request) -> Reply:
    libpod = bool(request.scope.get("kiln.libpod"))
    q = request.query_params
    opts = build_options(q, libpod)

    config = config_of(request)
    remote = "context" in opts
    if not remote:
        check_tar_content_type(request)
    body = None if remote else await spool_body(request, config.scratch_dir())
    registry = build_registry_options(request)
    quiet = opts["quiet"]

    def work(h: Handoff):
        try:
            with context_for(config, h) as ctx:
                if body is None:
                    return _run(ctx, opts, h, registry)
                body.seek(0)
                tar = {"context": "-", "context_stream": body}  # extracted by the build op
                return _run(ctx, {**opts, **tar}, h, registry)
        finally:
            if body is not None:
                body.close()

    kept = KeptLines()  # a quiet Docker build's output, sent only if it fails, as dockerd

    def render(event: Event) -> list[dict]:
        if quiet and not libpod:
            kept.extend(_loud(event))
            return []
        return _loud(event) if not quiet else stream_message(event, quiet=True)

    def done(result: Any) -> list[dict]:
        image_id = shapes.with_sha(result.image_id)
        names = list(getattr(result, "names", []) or opts["tags"])
        if libpod:
            out: list[dict[str, Any]] = []
            if not quiet:
                out = [{"stream": f"Successfully tagged {n}\n"} for n in names]
            # podman's bindings refuse a line without "stream" or "error": no "aux" here
            return [*out, {"stream": shapes.bare(image_id) + "\n"}]
        if quiet:
            return [{"aux": {"ID": image_id}}, {"stream": image_id + "\n"}]
        out = [
            {"aux": {"ID": image_id}},
            {"stream": f"Successfully built {shapes.bare(image_id)[:12]}\n"},
        ]
        out += [{"stream": f"Successfully tagged {shapes.familiar(n)}\n"} for n in names]
        return out

    # a build that fails before its first line (the Dockerfile cannot be found or read, the
    # context cannot be extracted) answers 4xx, as dockerd and podman do
    if not quiet or libpod:
        return StreamedOp(work, render, done, libpod=libpod)
    # dockerd answers a quiet build that fails once its steps began with 200, the steps and
    # the error (the CLI prints them; docker-py raises BuildError), one that fails before
    # with an error status
    return StreamedOp(work, render, done, libpod=libpod, streams_failure=lambda exc: bool(kept),
                      render_error=lambda exc: [*kept, docker_stream_error(exc)])  # fmt: skip


def _loud(event: Event) -> list[dict]:
    """What an unquiet build sends for ``event``: a RUN's output as it came, the rest as lines."""
    if event.kind == OUTPUT:
        return [{"stream": event.message}] if event.message else []
    return stream_message(event)


def _run(ctx, opts, h: Handoff, registry: RegistryOptions | None):
    # start-up: the build engine (a third of `kiln serve`'s imports) loads with the first
    # build, on its worker thread, not when the server starts
    from kiln.ops import build as build_ops

    known = {f.name for f in dataclasses.fields(build_ops.BuildOptions)}
    run_fields = {f.name for f in dataclasses.fields(RunSettings)}
    fields = {k: v for k, v in opts.items() if k in known}
    fields["run"] = RunSettings.given(**{k: v for k, v in opts.items() if k in run_fields})
    fields["cancel"] = h.cancel
    fields["tmpdir"] = ctx.tmpdir
    if registry is not None:
        fields["registry"] = registry
    missing = sorted(set(opts) - known - run_fields - {"quiet"})
    if missing:
        raise InvalidArgument(f"this kiln's build does not support: {', '.join(missing)}")
    return build_ops.build(ctx, build_ops.BuildOptions(**fields))


#: BuildKit's space targets: kiln keeps no such budget, and refuses them rather than
#: pruning everything the caller meant to keep
_SPACE_PARAMS = ("keep-storage", "reserved-space", "max-used-space", "min-free-space")


def build_prune_until(q: QueryParams) -> float | None:
    """``filters`` of ``docker builder prune`` -> the ``until`` time (epoch seconds): what
    no build used since then goes. Other filters and space targets are refused (400)."""
    until = prune_until(qfilters(q), "kiln's builder prune")
    for name in _SPACE_PARAMS:
        if qint(q, name, 0):
            raise InvalidArgument(
                f"{name} is not supported by kiln's builder prune: use --filter until=DURATION"
            )
    return until


async def build_prune(request: Request) -> Response:
    """``docker builder prune [-a] [--filter until=]``: dangling build-cache entries (all of
    them and the RUN cache mounts with ``all``, only those unused since ``until`` with it),
    then a collection; SpaceReclaimed is what left the disk."""

    all_ = docker_bool(request.query_params, "all")
    until = build_prune_until(request.query_params)

    def prune(ctx):
        pruned = prune_build_cache(ctx, all=all_, until=until)
        return pruned.cache_mount_bytes + ctx.collect_garbage().bytes_freed

    freed = await run_op(request, prune)
    return JSONResponse({"CachesDeleted": None, "SpaceReclaimed": freed})


routes = [
    Route("/build/prune", build_prune, methods=["POST"]),
    Route("/build", build, methods=["POST"]),
    Route("/libpod/build", build, methods=["POST"]),
]

__all__ = ["build_options", "routes"]
