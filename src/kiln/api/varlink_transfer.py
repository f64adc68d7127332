"""``io.podman`` methods that move images: build, push, pull, commit, import, export,
save, load, and runlabel's image side.

The long ones stream (``MoreResponse`` replies, see :func:`.varlink_service.streamed`)
and are cancelled when the client hangs up. Paths are the server's (a local unix
socket); nothing here reads the server's stdin. ``PushImage`` with ``format: "v2s1"``
pushes a Docker schema 1 manifest signed with the store's key (registries only).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any, cast

from kiln.errors import InvalidArgument, NotFound
from kiln.ops import archives, containers, file_transfer, registry
from kiln.ops import build as build_ops
from kiln.ops import images as image_ops
from kiln.ops import transports as tp
from kiln.ops.build_inputs import open_remote_context
from kiln.ops.context import Context
from kiln.ops.options import Credential, PullRequest, RegistryOptions, RunSettings, parse_memory
from kiln.util.choices import Choice, Compression, ImageFormat, PullPolicy

from .varlink_service import (
    bare_id,
    error_occurred,
    find_container,
    find_image,
    replies,
    streamed,
    varlink_errors,
)

# BuildInfo fields that only configured podman's own process (logs, CNI, mounts file):
# kiln has nothing to set from them, so any value is accepted.
_PODMAN_PROCESS_FIELDS = ("cniConfigDir", "cniPluginDir", "defaultsMountFilePath", "err", "out",
                          "reportWriter")  # fmt: skip


def _word(vocabulary: type[Choice], value: str | None, what: str, default: Any = None) -> Any:
    """A BuildInfo word as ``vocabulary``'s (kiln.util.choices); empty: ``default``."""
    text = (value or "").strip()
    if not text:
        return default
    try:
        return vocabulary.parse(text.lower().removeprefix("pull"))  # podman's PullIfMissing...
    except InvalidArgument:
        choices = ", ".join(vocabulary.words())
        raise error_occurred(f'{what} "{value}" is not supported: use one of {choices}') from None


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not key:
            raise error_occurred(f'{what} "{item}": expected KEY=VALUE')
        out[key] = value if sep else ""
    return out


def _build_fields(info: dict[str, Any]) -> dict[str, Any]:
    """BuildInfo (minus context and Dockerfiles) -> ``BuildOptions`` fields."""

    if info.get("signBy"):
        raise error_occurred("signBy: kiln does not sign images; build without signBy")
    for name in ("devices", "runtimeArgs"):
        if info.get(name):
            raise error_occurred(f"{name}: not supported by kiln's builder; leave it empty")
    res = info.get("buildOptions") or {}
    if res.get("cgroupParent"):
        raise error_occurred("buildOptions.cgroupParent: not supported by kiln; leave it empty")
    output = info.get("output") or ""
    tags = [t for t in [output, *(info.get("additionalTags") or [])] if t]
    platform = None
    if info.get("os") or info.get("architecture"):
        platform = f"{info.get('os') or 'linux'}/{info.get('architecture') or os.uname().machine}"
    fields: dict[str, Any] = {
        "tags": tags,
        "build_args": dict(info.get("buildArgs") or {}),
        "labels": _pairs(info.get("label"), "label"),
        "annotations": _pairs(info.get("annotations"), "annotation"),
        "target": info.get("target") or None,
        "no_cache": bool(info.get("nocache")),
        "squash": bool(info.get("squash")),
        "quiet": bool(info.get("quiet")),
        "iidfile": info.get("iidfile") or None,
        "platform": platform,
        "pull": _word(PullPolicy, info.get("pullPolicy"), "pullPolicy", PullPolicy.MISSING),
        "compression": _word(Compression, info.get("compression"), "compression", "gzip"),
        "volumes": [*(res.get("volume") or []), *(info.get("transientMounts") or [])],
        "run": RunSettings.given(
            cap_add=info.get("addCapabilities") or (),
            cap_drop=info.get("dropCapabilities") or (),
            add_hosts=res.get("addHosts") or (),
            ulimits=res.get("ulimit") or (),
            memory=res.get("memory") or None,
            memory_swap=res.get("memorySwap") or None,
            cpu_shares=res.get("cpuShares") or None,
            cpu_period=res.get("cpuPeriod") or None,
            cpu_quota=res.get("cpuQuota") or None,
            cpuset_cpus=res.get("cpusetCpus") or "",
            cpuset_mems=res.get("cpusetMems") or "",
            shm_size=parse_memory(res["shmSize"], "shmSize") if res.get("shmSize") else None,
        ),
    }
    fmt = _word(ImageFormat, info.get("outputFormat"), "outputFormat")
    if fmt:
        fields["image_format"] = fmt
    if info.get("layers") is not None:
        fields["layers"] = bool(info["layers"])
    if info.get("remoteIntermediateCtrs") is not None:
        fields["rm"] = bool(info["remoteIntermediateCtrs"])
    if info.get("forceRmIntermediateCtrs") is not None:
        fields["force_rm"] = bool(info["forceRmIntermediateCtrs"])
    return fields


@contextlib.contextmanager
def _context_root(ctx: Context, path: str) -> Iterator[str]:
    """The build context: a directory as it is, a tar (maybe compressed) extracted."""

    if not path:
        raise error_occurred("BuildImage needs contextDir: a directory or a tar of the context")
    if os.path.isdir(path):
        yield os.path.abspath(path)
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise NotFound(f"the build context {path}: {exc.strerror or exc}") from None
    with stream, open_remote_context("-", ctx.tmpdir, stdin=stream) as root:
        yield root


def _dockerfiles(root: str, given: list[str]) -> list[str]:
    """Relative Dockerfile paths name files in the context, never the server's cwd."""
    return [d if os.path.isabs(d) else os.path.join(root, d) for d in given if d]


def _names_or_ids(result: Any) -> str:
    return ",".join(n for img in result.images for n in (img.names or [bare_id(img.id)]))


class TransferMethods:
    """Mixed into the service class (see :class:`.varlink_service.PodmanImageService`)."""

    call: Any
    config: Any

    def _stream(self, name: str, work: Any, more: bool, request: Any, quiet: bool = False):
        return replies(name, streamed(cast(Any, self), work, more, request, quiet))

    @varlink_errors
    def BuildImage(self, build: dict[str, Any] | None, _more=False, _request=None):

        info = dict(build or {})
        fields = _build_fields(info)
        context_dir = info.get("contextDir") or ""

        def work(ctx: Context, cancel: threading.Event) -> str:
            with _context_root(ctx, context_dir) as root:
                opts = build_ops.BuildOptions(
                    context=root,
                    dockerfiles=_dockerfiles(root, list(info.get("dockerfiles") or [])),
                    cancel=cancel,
                    tmpdir=ctx.tmpdir,
                    **fields,
                )
                return bare_id(build_ops.build(ctx, opts).image_id)

        yield from self._stream("image", work, _more, _request, quiet=fields["quiet"])

    @varlink_errors
    def PushImage(
        self,
        name: str | None,
        tag: str | None,
        compress: bool | None,
        format: str | None,  # noqa: A002 - the IDL's name
        removeSignatures: bool | None,  # noqa: N803
        signBy: str | None,  # noqa: N803
        _more=False,
        _request=None,
    ):

        if signBy:
            raise error_occurred("signBy: kiln does not sign images; push without signBy")
        try:  # the push's own words (kiln.ops.registry.push_format): oci, v2s2, v2s1
            fmt = registry.push_format((format or "").strip() or None)
        except InvalidArgument as exc:
            raise error_occurred(f"format: {exc.message}") from None

        def work(ctx: Context, cancel: threading.Event) -> str:
            rec = find_image(ctx, name or "")
            file_transfer.push(ctx, name or "", tag or None, format=fmt, compress=bool(compress))
            return bare_id(rec.id)  # podman's last reply: the pushed image's ID

        yield from self._stream("reply", work, _more, _request)

    @varlink_errors
    def PullImage(self, name: str | None, creds: dict[str, Any] | None, _more=False, _request=None):

        request = pull_request(name, creds)

        def work(ctx: Context, cancel: threading.Event) -> str:
            return bare_id(file_transfer.pull(ctx, request).image_id)

        yield from self._stream("reply", work, _more, _request)

    @varlink_errors
    def Commit(
        self,
        name: str | None,
        image_name: str | None,
        changes: list[str] | None,
        author: str | None,
        message: str | None,
        pause: bool | None,
        manifestType: str | None,  # noqa: N803
        _more=False,
        _request=None,
    ):

        fmt = _word(ImageFormat, manifestType, "manifestType")

        def work(ctx: Context, cancel: threading.Event) -> str:
            find_container(ctx, name or "")  # pause: a working container runs nothing between steps
            rec = containers.commit_container(
                ctx, name or "", image_name or None, image_format=fmt,
                changes=list(changes or []), author=author or None, comment=message or None,
            )  # fmt: skip
            ctx.ev.result(bare_id(rec.id))
            return bare_id(rec.id)

        yield from self._stream("reply", work, _more, _request)

    @varlink_errors
    def ImportImage(
        self,
        source: str | None,
        reference: str | None,
        message: str | None,
        changes: list[str] | None,
        delete: bool | None,
    ) -> dict[str, Any]:

        if not source or source == "-":
            raise error_occurred("ImportImage needs source: a tarball path or an http(s) URL")
        rec = self.call(
            lambda ctx: archives.import_image(
                ctx, source, reference or None, list(changes or []), message or ""
            )
        )
        if delete and not source.startswith(("http://", "https://")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(source)
        return {"image": bare_id(rec.id)}

    @varlink_errors
    def ExportImage(
        self, name: str | None, destination: str | None, compress: bool | None, tags: Any
    ) -> dict[str, Any]:

        if not destination:
            raise error_occurred("ExportImage needs a destination (a path or TRANSPORT:PATH)")
        dest = tp.parse_transport(destination)
        if dest.is_store:  # a bare path: a docker archive, as podman wrote one
            dest = tp.parse_transport(f"docker-archive:{destination}")
        extra = [t for t in (tags or []) if t]

        def export(ctx: Context) -> str:
            rec = find_image(ctx, name or "")
            if extra:
                if dest.transport != tp.DOCKER_ARCHIVE:
                    raise InvalidArgument("tags: extra names are only written to a docker archive")
                archives.save_with_names(ctx, name or "", dest.path, extra)
            else:
                file_transfer.push(ctx, name or "", str(dest), compress=bool(compress))
            return rec.id

        return {"image": bare_id(self.call(export))}

    @varlink_errors
    def ImageSave(self, options: dict[str, Any] | None, _more=False, _request=None):

        opts = options or {}
        fmt = opts.get("format") or "docker-archive"
        if fmt not in archives.SAVE_FORMATS:
            raise error_occurred(
                f'format "{fmt}" is not supported: use one of {", ".join(archives.SAVE_FORMATS)}'
            )
        images = [n for n in [opts.get("name") or "", *(opts.get("moreTags") or [])] if n]
        output = opts.get("output") or ""

        def work(ctx: Context, cancel: threading.Event) -> str:
            if not images:
                raise error_occurred("ImageSave needs options.name")
            for n in images:
                find_image(ctx, n)
            compress = bool(opts.get("compress"))
            if output:  # kiln's addition: written where asked (a directory for the -dir formats)
                archives.save(ctx, images, output, format=fmt, compress=compress)
                return output
            # as podman: a new tar file, also of the -dir formats (the directory's files)
            path = _new_output(self.config.scratch_dir())
            try:
                with open(path, "wb") as out:
                    archives.save(ctx, images, out, format=fmt, compress=compress, dir_as_tar=True)
            except BaseException:
                _remove(path)
                raise
            return path

        yield from self._stream("reply", work, _more, _request, quiet=bool(opts.get("quiet")))

    @varlink_errors
    def LoadImage(
        self,
        name: str | None,
        inputFile: str | None,  # noqa: N803
        quiet: bool | None,
        deleteFile: bool | None,  # noqa: N803
        _more=False,
        _request=None,
    ):

        if not inputFile or inputFile == "-":
            raise error_occurred("LoadImage needs inputFile: the path of an archive")

        def work(ctx: Context, cancel: threading.Event) -> str:
            result = archives.load(ctx, inputFile)
            if name and len(result.images) == 1:
                image_ops.tag(ctx, result.images[0].id, name)
                result.images[0].names = ctx.store.names_of(result.images[0].id)
            if deleteFile:
                _remove(inputFile)
            return _names_or_ids(result)

        yield from self._stream("reply", work, _more, _request, quiet=bool(quiet))

    @varlink_errors
    def ContainerRunlabel(self, runlabel: dict[str, Any] | None) -> dict[str, Any]:

        rl = runlabel or {}
        image, label = rl.get("image") or "", rl.get("label") or ""
        if not label:
            raise error_occurred("ContainerRunlabel needs the label to run (such as RUN)")

        def command(ctx: Context) -> str:
            if rl.get("pull") and not image_ops.image_exists(ctx, image):
                options = RegistryOptions(authfile=rl.get("authfile") or None)
                registry.ensure_image(ctx, PullRequest.of(image, policy="missing", options=options))
            find_image(ctx, image)
            config = image_ops.inspect_image(ctx, image).get("Config") or {}
            value = (config.get("Labels") or {}).get(label)
            if not value:
                raise error_occurred(f"image {image} has no {label} label")
            return value

        value = self.call(command)
        raise error_occurred(
            f"kiln builds and stores images; it does not run containers, so the {label} label "
            f"of {image} was not run. Its command is: {value}"
        )


def pull_request(name: str | None, creds: dict[str, Any] | None) -> PullRequest:
    """``PullImage(name, creds)`` as a pull: ``name`` with or without a transport (none: a
    registry), ``creds`` podman's AuthConfig (``username``, ``password``). As podman's
    server, a registry image the store already has is not pulled again (policy missing)."""
    if not name:
        raise error_occurred("PullImage needs an image reference")
    auth = creds or {}
    user = auth.get("username")
    cred = Credential(str(user), str(auth.get("password") or "")) if user else None
    options = RegistryOptions(creds=cred)
    return PullRequest.of(name, policy="missing", options=options)


def _new_output(scratch: str) -> str:
    fd, path = tempfile.mkstemp(prefix="kiln-varlink-save-", suffix=".tar", dir=scratch)
    os.close(fd)
    return path


def _remove(path: str) -> None:
    import shutil

    with contextlib.suppress(FileNotFoundError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


__all__ = ["TransferMethods", "pull_request"]
