"""Working-container use cases: from, run, copy/add, config, commit, mount, umount, rm, list,
inspect, export, diff. Thin wiring over ``kiln.container.Builder``; no printing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from kiln import container  # its builder is imported on first use: `kiln inspect IMAGE` needs none
from kiln.container.records import find_record
from kiln.container.state import ContainerState
from kiln.errors import InvalidArgument, KilnError, NotFound
from kiln.ops.container_filters import parse_filters
from kiln.ops.container_run_view import run_view
from kiln.ops.context import sweep_leftovers
from kiln.ops.events import BYTES_STEP, BlobBytes
from kiln.util.arguments import string_list
from kiln.util.lazy_dataclass import dataclass
from kiln.util.output import check_output, open_output, write_output

if TYPE_CHECKING:
    from kiln.archive.changes import Change
    from kiln.container import Builder, CopyOutcome
    from kiln.container.config_flags import ConfigSettings
    from kiln.oci import Platform
    from kiln.ops.context import Context
    from kiln.ops.pull_options import RegistryOptions
    from kiln.runtime import RunSettings
    from kiln.runtime.options import RunOptions, StdStream
    from kiln.store import ImageRecord


@dataclass
class ContainerSummary:
    """One row of ``kiln containers``."""

    id: str
    name: str
    image_id: str  # "" for scratch
    image_name: str
    builder: bool  # kiln's own (False: state another tool wrote, shown with --all)
    mount_point: str = ""
    created: float = 0.0

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "builder": self.builder,
            "imageid": self.image_id.removeprefix("sha256:"),
            "imagename": self.image_name,
            "containername": self.name,
        }


def _load(ctx: Context, name: str) -> Builder:
    return container.Builder.load(ctx, name)


@contextlib.contextmanager
def _while_there(ctx: Context, b: Builder, name: str) -> Iterator[None]:
    """Another kiln may remove the container while this works on it (``kiln rm``, ``rmi -f``
    of its image): what then fails on its snapshot or state fails as the container gone."""
    try:
        yield
    except NotFound:
        try:
            ctx.store.get_container(b.id)
        except NotFound:
            raise NotFound(f"{name}: no such container (it was removed meanwhile)") from None
        raise


def _puller(ctx: Context, platform: Platform | None = None, options: RegistryOptions | None = None):
    """``(ref, policy) -> image id`` for ``kiln from --pull``, through the registry:
    ``platform``'s image (None: the host's), with ``options`` (None: the defaults)."""
    from kiln.ops.registry import ensure_image  # start-up: kiln containers needs no registry
    from kiln.registry.pull_request import PullRequest  # start-up: as ensure_image

    def pull(ref: str, policy: str) -> str:
        request = PullRequest.of(ref, policy=policy, options=options)
        if platform is not None:
            request = dataclasses.replace(request, platform=platform)
        return str(ensure_image(ctx, request))

    return pull


# -- lifecycle ----------------------------------------------------------------------------------


def create_container(
    ctx: Context,
    image: str,
    *,
    name: str | None = None,
    pull: str = "missing",
    image_format: str | None = None,
    run: RunSettings | None = None,
    platform: Platform | None = None,
    options: RegistryOptions | None = None,
    cidfile: str | None = None,
    volumes: Sequence[str] = (),
) -> Builder:
    """``kiln from``: a new working container over ``image`` (or ``scratch``); ``run``: the
    settings its ``kiln run`` uses unless that run's flags say otherwise; ``volumes``: the
    ``--volume`` specs (HOST:CTR[:OPTS]) bound in its runs, unless a run mounts something
    else at the same place; ``platform``:
    the image's for it (a local one of another platform is pulled as if missing);
    ``options``: the registry's; ``cidfile``: gets the container's ID."""

    sweep_leftovers(ctx)
    if cidfile:
        check_output(cidfile)  # refuse a bad --cidfile before making anything
    fmt = (image_format or ctx.config.image_format or "oci").lower()
    b = container.Builder.from_image(
        ctx, image, name=name, pull_policy=pull, puller=_puller(ctx, platform, options),
        image_format=fmt, run=run, platform=platform, volumes=volumes,
    )  # fmt: skip
    if cidfile:
        write_output(cidfile, b.id.encode())
    return b


def list_containers(
    ctx: Context,
    all: bool = False,  # noqa: A002
    filters: Sequence[str] = (),
) -> list[ContainerSummary]:
    """``kiln containers``: kiln's working containers (``all``: also state kiln cannot use);
    ``filters``: buildah's ``id=``, ``name=`` and ``ancestor=`` (``ops.container_filters``)."""
    matches = parse_filters(filters)  # a bad filter is refused before the store is read
    return [row for row in _summaries(ctx, all) if matches(row)]


def _summaries(ctx: Context, all: bool) -> list[ContainerSummary]:  # noqa: A002
    rows = []
    for rec in ctx.store.list_containers():
        try:
            state = ContainerState.from_json(rec.state)
        except KilnError:
            if all:
                rows.append(ContainerSummary(rec.id, rec.name, rec.image_id or "", "", False))
            continue
        rows.append(
            ContainerSummary(
                rec.id,
                rec.name,
                rec.image_id or "",
                state.image_name,
                True,
                state.mount_point or "",
                rec.created,
            )
        )
    return rows


def inspect_container(ctx: Context, name: str) -> dict[str, Any]:
    """``kiln inspect --type container``: what the container is made of, JSON-ready."""
    find_record(ctx.store, name)  # NotFound for an image's name, before the builder is loaded
    b = _load(ctx, name)
    st = b.state
    config = b.config.image.to_json()
    oci = b.config.copy()
    oci.drop_docker_only_settings()
    return {
        "Type": f"kiln {st.to_json()['kiln_container_version']}",
        "FromImage": st.image_name,
        "FromImageID": (st.image_id or "").removeprefix("sha256:"),
        "FromImageDigest": _manifest_digest(ctx, st.image_id),
        "Container": b.name,
        "ContainerID": b.id,
        "MountPoint": st.mount_point or "",
        "Format": st.format,
        "Created": b.record.created,
        "SnapshotKey": st.snapshot_key,
        "ImageAnnotations": dict(b.config.annotations),
        "ImageCreatedBy": st.created_by,
        "HistoryComment": st.history_comment,
        "PendingHistory": [h.to_json() for h in st.history],
        "Added": [a.to_json() for a in st.added],
        "Config": config,
        # buildah's views of the config an OCI and a Docker commit write, and the base's
        # history, which scripts read as {{.OCIv1.Config.Env}}, {{.Docker.Config.Cmd}}
        "OCIv1": oci.image.to_json(),
        "Docker": config,
        "History": config.get("history") or [],
        **run_view(st.run),
    }


def _manifest_digest(ctx: Context, image_id: str | None) -> str:
    """The manifest digest of the container's image ("" for scratch or one since removed)."""
    if not image_id:
        return ""
    try:
        return ctx.store.get_image(image_id).manifest_digest
    except NotFound:
        return ""


def remove_containers(ctx: Context, names: Sequence[str], all: bool = False) -> list[str]:  # noqa: A002
    """``kiln rm``: remove each container (``all``: every kiln container); returns their IDs.

    Every name is looked up before anything is removed, so an unknown name removes nothing.
    """
    names = string_list(names, "remove_containers: names")
    if all and names:
        raise InvalidArgument("give container names or --all, not both")
    if not all and not names:
        raise InvalidArgument("give at least one container name (or --all)")
    if all:
        builders = []
        for rec in ctx.store.list_containers():
            with contextlib.suppress(KilnError):
                builders.append(_load(ctx, rec.id))
    else:
        builders = [_load(ctx, n) for n in names]
    removed = []
    for b in builders:
        b.delete()
        removed.append(b.id)
    return removed


def rename_container(ctx: Context, name: str, new_name: str) -> str:
    """``kiln rename``: ``name`` (a name or ID) is known as ``new_name`` from now on; returns
    the container's ID. A name another container holds is ``AlreadyExists``."""
    b = _load(ctx, name)
    b.rename(new_name)
    return b.id


def mount_container(ctx: Context, name: str) -> str:
    """``kiln mount``: mount the rootfs and leave it mounted; returns the merged path."""
    return _load(ctx, name).mount()


def unmount_container(ctx: Context, name: str) -> str:
    """``kiln umount``: returns the container ID."""
    b = _load(ctx, name)
    b.unmount()
    return b.id


# -- run / copy / config ------------------------------------------------------------------------


def run_in_container(
    ctx: Context,
    name: str,
    args: Sequence[str],
    opts: RunOptions | None = None,
    *,
    env: Sequence[str] = (),
    user: str | None = None,
    workdir: str | None = None,
    stdin: StdStream = None,
    stdout: StdStream = None,
    stderr: StdStream = None,
    add_history: bool = False,
) -> int:
    """``kiln run``: run ``args`` with ``opts`` (a ``RunOptions``: the CLI's flags); returns
    the exit code. A script's common ones are keywords: ``env`` (``NAME=VALUE``, added to
    the image's), ``user`` and ``workdir`` (instead of the image's), and the standard
    streams (a file, a file descriptor or an in-memory stream such as ``io.BytesIO``;
    None: this process's). ``add_history`` (buildah's --add-history): a command that
    succeeded is recorded in the history as buildah writes it, ``/bin/sh -c ARGS...``
    (the config's shell words, if set)."""
    args = string_list(args, "run_in_container: args")
    given = {"user": user, "cwd": workdir, "stdin": stdin, "stdout": stdout, "stderr": stderr}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if env:
        overrides["env"] = string_list(env, "run_in_container: env")
    sweep_leftovers(ctx)
    b = _load(ctx, name)
    with _while_there(ctx, b, name):
        code = b.run(list(args), opts, **overrides)
        if add_history and code == 0:
            shell = " ".join(b.config.runtime.shell) or "/bin/sh -c"
            b.add_history(f"{shell} {' '.join(args)}")
            b.save()
    return code


def copy_to_container(
    ctx: Context,
    name: str,
    sources: Sequence[str],
    dest: str,
    *,
    add: bool = False,
    chown: str | None = None,
    chmod: str | None = None,
    from_: str | None = None,
    context_dir: str | None = None,
    add_history: bool = False,
) -> CopyOutcome:
    """``kiln copy``/``kiln add``: Docker COPY/ADD into the container.

    Sources are read inside ``context_dir`` (or ``from_``'s tree); with neither, they are
    host paths, as in buildah: relative to the current directory, absolute or ``..`` too.
    An http(s) source is downloaded by copy as by add (buildah's), and never unpacked.
    ``add_history`` (buildah's --add-history): the copy is recorded in the history as
    buildah writes it, ``/bin/sh -c #(nop) COPY file:HEX`` (``dir:``, ``multi:``)."""
    sources = string_list(sources, "copy_to_container: sources")
    b = _load(ctx, name)
    if context_dir is None:
        context_dir = os.path.abspath(".")
        if not from_:
            context_dir, sources = _host_sources(context_dir, sources)
    context_dir = os.path.abspath(context_dir)
    with _while_there(ctx, b, name), _source_root(ctx, from_, b.id) as from_root:
        common: dict[str, Any] = dict(
            context_dir=context_dir, chown=chown, chmod=chmod, from_root=from_root,
            tmpdir=ctx.tmpdir,
        )  # fmt: skip
        if add:
            outcome = b.add(sources, dest, **common)
        else:  # buildah copy downloads URLs
            outcome = b.copy(sources, dest, urls=True, **common)
        if add_history:
            kind = "multi" if len(sources) > 1 else "file"
            if (
                kind == "file"
                and not from_root
                and os.path.isdir(os.path.join(context_dir, sources[0]))
            ):
                kind = "dir"
            hexdigest = outcome.digest.removeprefix("sha256:")
            b.add_history(f"/bin/sh -c #(nop) {'ADD' if add else 'COPY'} {kind}:{hexdigest}")
            b.save()
    return outcome


def _host_sources(context_dir: str, sources: list[str]) -> tuple[str, list[str]]:
    """``(root, sources)`` to copy host paths: ``context_dir`` when every local source lies
    in it, else the host's root with each local source made absolute (URLs stay as given)."""

    def local(src: str) -> bool:
        return not src.startswith(("http://", "https://", "git@", "git://"))

    paths = {src: os.path.normpath(os.path.join(context_dir, src)) for src in sources if local(src)}
    inside = all(p == context_dir or p.startswith(context_dir.rstrip("/") + "/")
                 for p in paths.values())  # fmt: skip
    if inside:  # an absolute source inside it is read by its path in it
        return context_dir, [os.path.relpath(paths[s], context_dir) if os.path.isabs(s) else s
                             for s in sources]  # fmt: skip
    return "/", [paths.get(src, src) for src in sources]


@contextlib.contextmanager
def _source_root(ctx: Context, ref: str | None, own_id: str) -> Iterator[str | None]:
    """The root a ``--from`` source is read from: another container, or an image's tree."""
    if not ref:
        yield None
        return

    try:
        other = container.Builder.load(ctx, ref)
    except NotFound:
        other = None
    if other is not None:
        if other.id == own_id:
            raise InvalidArgument("--from names the container being copied into")
        with other.mounted() as root:
            yield root
        return
    from kiln.image import open_store_image, unpack_image  # start-up: kiln containers
    from kiln.snapshot.mount import mounted  # start-up, as above

    img = open_store_image(ctx.store, ref)
    top = unpack_image(ctx.store, ctx.snapshots, img)
    if top is None:
        with tempfile.TemporaryDirectory(prefix="kiln-empty-", dir=ctx.tmpdir) as empty:
            yield empty
        return
    key = f"kiln-from-{os.urandom(8).hex()}"
    try:  # the view made inside: a Ctrl-C just after ``view`` returned must remove it too
        spec = ctx.snapshots.view(key, top)
        with mounted(spec) as root:
            yield root
    finally:
        with contextlib.suppress(KilnError, OSError):
            ctx.snapshots.remove(key)


def configure_container(ctx: Context, name: str, settings: ConfigSettings) -> Builder:
    """``kiln config``: apply the settings and persist them."""
    from kiln.container.config_flags import apply_settings, docker_only_given  # start-up

    b = _load(ctx, name)
    hist = apply_settings(b.config, settings)
    b.set_history_defaults(created_by=hist.created_by, comment=hist.history_comment)
    for created_by in hist.entries:
        b.add_history(created_by)
    if b.state.format == "oci":  # buildah config's warning; kiln commit leaves them out
        for what in docker_only_given(settings, b.config):
            ctx.ev.warning(f"{what} is not supported for OCI image format and {what} "
                           "will be ignored. Must use `docker` format")  # fmt: skip
    b.save()
    return b


# -- commit / export / diff ---------------------------------------------------------------------


def commit_container(
    ctx: Context,
    name: str,
    image: str | None = None,
    *,
    image_format: str | None = None,
    squash: bool = False,
    rm: bool = False,
    timestamp: int | None = None,
    compression: str = "gzip",
    iidfile: str | None = None,
    changes: Sequence[str] = (),
    omit_history: bool = False,
    author: str | None = None,
    comment: str | None = None,
    unset_env: Sequence[str] = (),
    oci_fields_only: bool = False,
) -> ImageRecord:
    """``kiln commit``: a new image from the container (dangling when ``image`` is None).

    ``author`` and ``comment`` (``docker commit -a/-m``, POST /commit): the image's author
    and comment, and those of the history entry the commit adds; ``unset_env`` (buildah's
    ``--unsetenv``): variables the image's config drops; the container's own config is
    not changed. (``kiln commit --manifest`` joins the image to a list afterwards:
    ``ops.manifest_join``.) ``oci_fields_only`` (buildah commit's): an OCI image leaves out
    what only Docker's config has (SHELL, HEALTHCHECK, ONBUILD, the comment, Hostname and
    Domainname), which ``kiln config`` warned of; the API's commit keeps them.
    """
    if timestamp is None and os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        timestamp = int(os.environ["SOURCE_DATE_EPOCH"])
    if iidfile:
        check_output(iidfile)  # refuse a bad --iidfile before committing anything
    b = _load(ctx, name)
    if author:
        b.config.set_author(author)
    if comment:
        b.config.set_comment(comment)
    for key in unset_env:
        b.config.unset_env(key)
    if oci_fields_only and (image_format or b.state.format) == "oci":
        b.config.drop_docker_only_settings()
    progress = _Written(ctx, f"layer of {name}", f"Writing the layer of {name}")
    with _while_there(ctx, b, name):
        record = b.commit(
            image,
            on_bytes=progress,
            format=image_format,
            timestamp=timestamp,
            squash=squash,
            compression=compression,
            omit_history=omit_history,
            changes=list(changes),
            history_comment=comment or None,
            rm=rm,
        )
    progress.done()
    if iidfile:
        write_output(iidfile, record.id.encode())
    return record


def export_container(
    ctx: Context, name: str, output: str | os.PathLike[str], stdout: Any = None
) -> str:
    """``kiln export``: the merged filesystem as a tar at ``output`` (a file is written
    atomically, a device or FIFO through: ``kiln.util.output``; ``-`` is ``stdout``, a
    binary stream, when given). How much was written is progress."""
    output = os.fspath(output)
    if output != "-" or stdout is None:
        check_output(output)
    b = _load(ctx, name)
    progress = _Written(ctx, f"export of {name}", f"Exporting {name}")
    with _while_there(ctx, b, name), open_output(output, stdout=stdout) as out:
        b.export(out.file, on_bytes=progress)
    progress.done()
    return output


class _Written:
    """Bytes written so far as ``progress`` events (``BlobBytes``: one a MiB), and one at
    the end (``done``) once any was sent; a write under a MiB shows none, as before."""

    def __init__(self, ctx: Context, ident: str, message: str) -> None:
        self._ev, self._bytes = ctx.ev, BlobBytes(ctx.ev)
        self._ident, self._message, self._n = ident, message, 0

    def __call__(self, n: int) -> None:
        self._n = n
        self._bytes.report(self._ident, n, None, self._message)

    def done(self) -> None:
        if self._n >= BYTES_STEP:
            self._ev.progress(self._ident, self._n, self._n, self._message)


def diff_container(ctx: Context, name: str) -> list[Change]:
    """``kiln diff``: A/C/D changes against the container's image."""
    return _load(ctx, name).diff()


def __getattr__(name: str) -> Any:
    """``ConfigSettings`` (the ``kiln config`` flags), loaded only when a caller asks."""
    if name == "ConfigSettings":
        from kiln.container.config_flags import ConfigSettings  # start-up, as above

        return ConfigSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigSettings",
    "ContainerSummary",
    "commit_container",
    "configure_container",
    "copy_to_container",
    "rename_container",
    "create_container",
    "diff_container",
    "export_container",
    "inspect_container",
    "list_containers",
    "mount_container",
    "remove_containers",
    "run_in_container",
    "unmount_container",
]
