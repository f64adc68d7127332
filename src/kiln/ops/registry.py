"""Registry use cases: pull (with pull policies), push, FROM's ensure_image, login,
logout and search. ``docker://`` references from ``kiln pull``/``kiln push`` land here.

Short names go through registries.conf: aliases, then the unqualified-search
registries; an ambiguous name in ``enforcing`` mode is refused with the
candidates listed. Options with ``docker_short_names`` (the Docker API's routes)
pull and search a short name on Docker Hub, as dockerd does; a local image is
found by the same names either way. Pull policies are podman's: ``always`` (contact the
registry; layers present are still skipped), ``missing`` (only when no local
image has the name), ``never`` (local only), ``newer`` (pull when the
registry's manifest digest is not one the local image was pulled as).

Events (``ctx.events``), as podman prints them: ``Trying to pull REF...``,
``Getting image source signatures``, ``Copying blob sha256:...`` then progress
(id = the digest) ending ``done``, or ``... skipped: already exists``;
``Copying config sha256:... done``; ``Writing manifest to image destination``;
the result is the image ID. Credentials are never part of an event or error.

``kiln.registry`` and the registry source and sink (httpx) are imported where a
registry is used, not with this module: a push to ``oci:`` or a build's local
``FROM`` imports this module without paying for the HTTP stack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any

from kiln.errors import InvalidArgument, KilnError, NotFound
from kiln.image import copy_image, open_held_image, open_store_image
from kiln.oci import ImageConfig, Index, Manifest, Reference
from kiln.oci import media_types as mt
from kiln.oci.reference import is_short_name
from kiln.ops import image_events
from kiln.ops.config import Config
from kiln.ops.events import PULL_STOPS_AT
from kiln.ops.store_copy import unpack_into
from kiln.ops.transports import registry_reference
from kiln.registry import RegistryOptions
from kiln.registry.options import retry_values
from kiln.registry.pull_request import PullRequest
from kiln.store.trust_key import schema1_signing_key
from kiln.util.choices import PULL_POLICIES, Compression, ImageFormat
from kiln.util.lazy_dataclass import dataclass
from kiln.util.output import check_output, write_output

if TYPE_CHECKING:
    from kiln.ops.context import Context
    from kiln.registry import Credential, RegistryClient
    from kiln.store import ImageRecord

_PROGRESS_STEP = 1 << 20  # bytes between progress events of one blob


@dataclass
class PullResult:
    image_id: str
    manifest_digest: str
    names: list[str] = field(default_factory=list)
    source: str = ""
    ids: list[str] = field(default_factory=list)  # every image pulled (--all-tags)
    pulled: bool = True  # False: the local image satisfied the policy

    @property
    def digest(self) -> str:
        return self.manifest_digest

    @property
    def destination(self) -> str:  # TransferResult's field name
        return self.source


@dataclass
class PushResult:
    image_id: str
    manifest_digest: str
    destination: str = ""
    names: list[str] = field(default_factory=list)
    manifest_size: int = 0

    @property
    def digest(self) -> str:
        return self.manifest_digest


@dataclass(frozen=True)
class TagResult:
    name: str
    tag: str


# -- options and clients ----------------------------------------------------------------------


def registry_options(
    ctx: Context | None = None, options: RegistryOptions | None = None
) -> RegistryOptions:
    """``options`` (default: ``RegistryOptions()``) with the context's configured
    registries.conf, auth file, certificate directory and retries (``KILN_RETRY``,
    ``KILN_RETRY_DELAY``) where it names none; without a context (login, search: no
    store), the environment's configuration."""
    base = options or RegistryOptions()
    cfg = ctx.config if ctx is not None else Config.from_env()
    values: dict[str, Any] = {}
    if cfg is not None:
        for key in ("registries_conf", "authfile", "cert_dir"):
            if getattr(cfg, key, None) and getattr(base, key) is None:
                values[key] = getattr(cfg, key)
        configured = retry_values(getattr(cfg, "retry", None), getattr(cfg, "retry_delay", None),
                                  ("KILN_RETRY", "KILN_RETRY_DELAY"))  # fmt: skip
        if base.retries is None and "retries" in configured:
            values["retries"] = configured["retries"]
        if base.retry_delay is None and "retry_delay" in configured:
            values["retry_delay"], values["retry_backoff"] = configured["retry_delay"], False
    return replace(base, **values) if values else base


@contextlib.contextmanager
def registry_client(ctx: Context | None, options: RegistryOptions | None) -> Iterator[Any]:
    """A RegistryClient configured as :func:`registry_options` says, closed on exit; the
    HTTP stack is imported here, at the first use of a registry."""
    from kiln.registry.client import RegistryClient  # start-up: see the module docstring

    with RegistryClient(registry_options(ctx, options)) as client:
        yield client


def pull_candidates(client: RegistryClient, ref: str) -> list[Any]:
    """The References a pull of ``ref`` (``docker://`` or not) tries, in order: ``ref`` itself
    when fully qualified, else registries.conf's for the short name (an ambiguous one in
    ``enforcing`` mode is refused), or Docker Hub's with ``docker_short_names``."""
    cands = client.resolve_short_name(registry_reference(ref))
    return [c if isinstance(c, Reference) else Reference.parse(str(c)) for c in cands]


def _local_names(client: RegistryClient | None, ref: str) -> list[str]:
    """Names a local image for ``ref`` may carry (no ambiguity check, no network); the
    same whichever way the client resolves a short name for a pull."""
    names = [ref]
    if client is None or not is_short_name(ref):
        return names
    with contextlib.suppress(KilnError):
        names += [str(c) for c in client.conf.resolve_short_name(ref)]
    bare = ref.split("@", 1)[0]
    for reg in client.conf.search:
        names.append(f"{reg}/{bare}")
    names.append(f"localhost/{bare}")
    return list(dict.fromkeys(names))


def _find_local(ctx: Context, names: Sequence[str]) -> ImageRecord | None:
    for name in names:
        try:
            return ctx.store.resolve_image(name)
        except (NotFound, InvalidArgument):
            continue
    return None


# -- pull -------------------------------------------------------------------------------------


class _PullEvents:
    """Blob progress from the pull's worker threads -> podman-style events."""

    def __init__(self, ctx: Context):
        self.ev = ctx.ev
        self._last: dict[str, int] = {}

    def __call__(self, kind: str, desc: Any, done: int, state: str) -> None:
        digest = str(desc.digest)
        short = desc.digest.hex[:12]
        if kind == "config":
            if state in ("done", "skipped"):
                self.ev.step(f"Copying config {digest} done", id=digest)
            return
        if state == "skipped":
            self.ev.step(f"Copying blob {digest} skipped: already exists", id=digest, state=state)
        elif state == "start":
            self._last[digest] = 0
            self.ev.step(f"Copying blob {digest}", id=digest)
        elif state == "bytes":
            if done - self._last.get(digest, 0) >= _PROGRESS_STEP:
                self._last[digest] = done
                total = desc.size if desc.size >= 0 else None
                self.ev.progress(digest, done, total, f"Copying blob {short}")
        elif state == "done":
            self.ev.progress(digest, desc.size, desc.size, f"Copying blob {short}")


def pull(ctx: Context, request: PullRequest, *, workers: int = 4) -> PullResult:
    """Pull ``request.source`` (``docker://`` optional) into the store under its policy.

    ``request.platform`` picks an index entry (None: the host's); ``request.all_tags``
    pulls every tag of the repository (``ids`` lists them all); ``request.options``: how
    to reach the registry (TLS, credentials, registries.conf; unset values come from the
    context's configuration). ``all_platforms`` is ``kiln.ops.file_transfer.pull``'s.
    """
    policy, plat = request.policy, request.platform
    ref = registry_reference(request.source)
    with registry_client(ctx, request.options) as client:
        if request.all_tags:
            return _pull_all_tags(ctx, client, ref, plat, workers)
        local = _find_local(ctx, _local_names(client, ref)) if policy != "always" else None
        if not policy.asks_registry(have_local=local is not None):
            if local is None:
                raise NotFound(f"{ref}: image not known locally and the pull policy is never")
            return _local_result(local, ref)
        cands = pull_candidates(client, ref)
        if policy == "newer" and local is not None and _up_to_date(ctx, client, cands, local):
            return _local_result(local, ref)
        return _pull_first(ctx, client, cands, plat, workers)


def _local_result(rec: ImageRecord, ref: str) -> PullResult:
    return PullResult(rec.id, rec.manifest_digest, list(rec.names), ref, [rec.id], pulled=False)


def _up_to_date(ctx: Context, client: RegistryClient, cands: list, local: ImageRecord) -> bool:
    known = {d.rsplit("@", 1)[-1] for d in local.repo_digests} | {local.manifest_digest}
    for cand in cands:
        try:
            desc = client.head_manifest(cand)
        except KilnError as exc:
            ctx.ev.warning(f"checking {cand} for a newer image: {exc}; using the local image")
            return True
        if desc is not None:
            return str(desc.digest) in known
    return True


def _pull_first(ctx: Context, client, cands: list, plat, workers: int) -> PullResult:
    """Pull the first candidate that works (permissive short names may have several)."""
    if len(cands) == 1:
        return _pull_one(ctx, client, cands[0], plat, workers)
    errors: list[str] = []
    last: KilnError | None = None
    for cand in cands:
        try:
            return _pull_one(ctx, client, cand, plat, workers)
        except KilnError as exc:
            errors.append(f"{cand}: {exc}")
            last = exc
    if last is None:
        raise NotFound("no registry to pull from")
    raise type(last)(
        "pulling failed from every unqualified-search registry:\n  " + "\n  ".join(errors)
    ) from None


def _pull_one(ctx: Context, client, cand, plat, workers: int) -> PullResult:
    from kiln.image.registry_source import (  # start-up: see the module docstring
        pull_into_store,
        resolve_remote,
    )

    ev = ctx.ev
    ev.step(f"Trying to pull {cand}...")
    try:
        remote = resolve_remote(client, cand, plat)
    except NotFound as exc:
        text = str(exc)
        if "manifest unknown" in text:  # Docker's words, then the registry's
            text = f"manifest for {cand} not found: manifest unknown ({text})"
        raise NotFound(f"initializing source docker://{cand}: {text}") from None
    except KilnError as exc:
        raise type(exc)(f"initializing source docker://{cand}: {exc}") from None
    ev.step("Getting image source signatures")
    # name:tag@digest: the digest alone says what is pulled, and the tag is not moved to
    # it (podman and dockerd drop such a tag too)
    names = [f"{cand.name}:{cand.tag}"] if cand.tag and not cand.digest else []
    with ctx.store.lease() as lease:
        rec = pull_into_store(
            client,
            remote,
            ctx.store,
            names,
            lease=lease,
            progress=_PullEvents(ctx),
            workers=workers,
            # unpacked while it arrives, so a first build does not wait; not an image asked
            # for another platform (it is mostly passed on, as import and load decide)
            snaps=unpack_into(ctx, plat),
        )
        ev.step("Writing manifest to image destination", digest=str(remote.manifest_digest))
        if plat is not None and remote.index_digest is None:
            _warn_other_platform(ctx, rec, plat)
    digest = str(remote.digests[0])
    for name in names or [str(cand)]:
        image_events.record(ctx, "pull", name, name)
    ev.result(rec.id.removeprefix("sha256:"), id=rec.id, names=names, digest=digest)
    return PullResult(rec.id, digest, names, str(cand), [rec.id])


def _warn_other_platform(ctx: Context, rec: ImageRecord, wanted: Any) -> None:
    """A single image (no list to choose from) is pulled whatever its platform, as podman
    pulls it; as podman, say so when it is not the one asked for."""
    found = open_store_image(ctx.store, rec.id).config.platform
    if not wanted.matches(found):
        ctx.ev.warning(f"image platform ({found}) does not match the expected platform ({wanted})")


def _pull_all_tags(ctx: Context, client, ref: str, plat, workers: int) -> PullResult:
    cands = pull_candidates(client, ref)  # permissive: the first registry listing tags wins
    last: KilnError | None = None
    for cand in cands:
        if cand.digest or (cand.tag and ":" in ref.rsplit("/", 1)[-1]):
            raise InvalidArgument(
                f"{ref}: --all-tags takes a repository name without tag or digest"
            )
        try:
            tags = client.list_tags(cand)
        except KilnError as exc:
            last = exc
            continue
        if not tags:
            raise NotFound(f"{cand.name}: the repository has no tags")
        results = [_pull_one(ctx, client, cand.with_tag(t), plat, workers) for t in sorted(tags)]
        first = results[0]
        names = [n for r in results for n in r.names]
        ids = list(dict.fromkeys(i for r in results for i in r.ids))
        return PullResult(first.image_id, first.manifest_digest, names, cand.name, ids)
    raise last or NotFound(f"{ref}: no registry to pull from")


def ensure_image(ctx: Context, request: PullRequest) -> str:
    """The image ID for ``request.source`` under ``request.policy``, pulling when the
    policy says so.

    What a build's FROM and ``kiln from`` call: a local name, ID or ID prefix
    satisfies ``missing``/``never`` without any network; ``always``/``newer``
    contact the registry. ``request.platform`` picks a list's entry (default: the
    host's). Returns ``"sha256:<hex>"``. ``request.cancel`` stops a pull (``Cancelled``).
    """
    ctx = ctx.stopped_by(request.cancel, "the pull was cancelled", PULL_STOPS_AT)
    if not request.policy.asks_registry(have_local=True):
        with contextlib.suppress(NotFound, InvalidArgument):
            return ctx.store.resolve_image(request.source).id
    return pull(ctx, request).image_id


def resolve_names(
    ctx: Context | None, name: str, *, options: RegistryOptions | None = None
) -> list[str]:
    """The full names a (short) name may mean, in the order a pull tries them
    (registries.conf's aliases and unqualified-search registries); no network."""
    with registry_client(ctx, options) as client:
        return [str(c) for c in client.resolve_short_name(name, enforce=False)]


@dataclass(frozen=True)
class RemoteDescriptor:
    media_type: str
    digest: str
    size: int
    platforms: list[dict[str, Any]]  # OCI platform objects


def remote_descriptor(
    ctx: Context | None, ref: str, *, options: RegistryOptions | None = None
) -> RemoteDescriptor:
    """What the registry serves for ``ref`` (dockerd's ``/distribution/{name}/json``): the
    manifest's descriptor and the platforms it offers (an index's entries, else the
    image config's)."""
    with registry_client(ctx, options) as client:
        target = Reference.parse(registry_reference(ref))
        raw, media_type, digest = client.get_manifest(target)
        platforms: list[dict[str, Any]] = []
        if mt.is_index(media_type):
            for desc in Index.parse(raw, media_type).manifests:
                if desc.platform is not None:
                    platforms.append(desc.platform.to_json())
        else:
            manifest = Manifest.parse(raw, media_type)
            with client.open_blob(target, manifest.config.digest) as f:
                config = ImageConfig.parse(f.read(8 << 20))
            plat = {"architecture": config.architecture, "os": config.os}
            if config.variant:
                plat["variant"] = config.variant
            platforms.append(plat)
        return RemoteDescriptor(media_type, str(digest), len(raw), platforms)


# -- push -------------------------------------------------------------------------------------


class _PushEvents:
    """A push's blobs -> podman-style events; a layer's upload as progress (id = the
    digest) every MiB, ending at its size, as a pull's."""

    def __init__(self, ctx: Context):
        self.ev = ctx.ev
        self._last: dict[str, int] = {}  # digest -> bytes at its last progress event

    def __call__(self, kind: str, desc: Any, state: str) -> None:
        digest = str(desc.digest)
        what = "config" if kind == "config" else "blob"
        if state == "start":
            if kind != "config":
                self.ev.step(f"Copying {what} {digest}", id=digest, state=state)
        elif state in ("exists", "mounted"):
            self.ev.step(f"Copying {what} {digest} skipped: already exists", id=digest, state=state)
        elif state == "done":
            if self._last.pop(digest, None) is not None:  # its bar ends full
                self.ev.progress(
                    digest, desc.size, desc.size, f"Copying blob {desc.digest.hex[:12]}"
                )
            self.ev.step(f"Copying {what} {digest} done", id=digest, state=state)

    def sent(self, kind: str, desc: Any, n: int) -> None:
        if kind == "config":
            return
        digest = str(desc.digest)
        last = self._last.get(digest, 0)
        if n < last:  # the upload was retried from the start
            last = self._last[digest] = 0
        if n - last >= _PROGRESS_STEP:
            self._last[digest] = n
            total = desc.size if desc.size >= 0 else None
            self.ev.progress(digest, n, total, f"Copying blob {desc.digest.hex[:12]}")


def push_format(format: str | None) -> str | None:
    """A push's ``--format``: an ``ImageFormat`` (``v2s2`` is docker), or ``v2s1`` (signed
    Docker schema 1, which only a push writes); None: as stored."""
    if format is None:
        return None
    if format.strip().lower() == "v2s1":
        return "v2s1"
    try:
        return ImageFormat.parse(format)
    except InvalidArgument:
        raise InvalidArgument(
            f'unknown manifest format "{format}": use oci, v2s2 or v2s1'
        ) from None


def push_compression(compression: str) -> Compression:
    """A push's ``--compression-format``: registries get compressed layers, so ``none`` is
    refused (the words and their check are ``Compression``'s)."""
    comp = Compression.parse(compression, "--compression-format")
    if comp is Compression.NONE:
        raise InvalidArgument(
            f"--compression-format {compression!r} is invalid: registries get compressed "
            "layers, use gzip or zstd"
        )
    return comp


def push(
    ctx: Context,
    image: str,
    dest: str | None = None,
    *,
    format: str | None = None,
    compression: str | None = None,
    compress: bool = False,
    digestfile: str | None = None,
    options: RegistryOptions | None = None,
    workers: int = 4,
    annotations: dict[str, str] | None = None,
) -> PushResult:
    """Push store image ``image`` to ``dest`` (``docker://`` optional; default: its name).

    ``format``: ``oci``, ``docker`` (or ``v2s2``) converts the manifest; ``v2s1`` pushes
    a Docker schema 1 manifest signed with the store's key (gzip layers only: others are
    recompressed, ``zstd`` is refused);
    ``compression``: ``gzip`` or ``zstd`` recompresses layers that differ.
    Without either, the stored manifest goes up byte for byte (same digest).
    ``annotations`` are added to the pushed (OCI) manifest (a build's inline cache).
    """
    if digestfile:
        check_output(digestfile)  # refuse a bad --digestfile before pushing
    fmt = push_format(format)
    if compression is not None:
        compression = push_compression(compression)
    if fmt == "v2s1" and compression == "zstd":
        raise InvalidArgument(
            "Docker schema 1 manifests carry gzip layers only: push v2s1 without zstd "
            "compression, or as v2s2 or oci"
        )
    if fmt == "v2s1" and annotations:
        raise InvalidArgument("Docker schema 1 manifests have no annotations: push as oci")
    # held: another kiln may remove the image and collect while it goes up
    with ctx.store.lease() as lease:
        img = open_held_image(ctx.store, image, lease)
        return _push_held(
            ctx, img, image, dest, fmt, compression, digestfile, options, workers, annotations
        )


def _push_held(
    ctx: Context,
    img: Any,
    image: str,
    dest: str | None,
    fmt: str | None,
    compression: str | None,
    digestfile: str | None,
    options: RegistryOptions | None,
    workers: int,
    annotations: dict[str, str] | None,
) -> PushResult:
    target = Reference.parse(registry_reference(dest or image))
    stored = {mt.layer_compression(d.media_type) for d in img.layers}
    if compression is None and "none" in stored:
        compression = "gzip"  # registries get compressed layers, as podman sends them
    if fmt == "v2s1":
        from kiln.image.schema1_sink import check_schema1_layers  # start-up: see the docstring

        check_schema1_layers(img.layers)
        if stored - {"gzip"}:
            compression = "gzip"  # schema 1 knows gzip only: zstd layers are recompressed
    same_format = fmt is None or (
        fmt != "v2s1" and mt.manifest_type_for(fmt) == img.manifest.media_type
    )
    as_is = same_format and (compression is None or stored <= {compression})
    mounts = []
    for value in [*img.record.repo_digests, *img.record.names]:
        with contextlib.suppress(KilnError):
            mounts.append(Reference.parse(value))
    ev = ctx.ev
    ev.step("Getting image source signatures")
    from kiln.image.registry_sink import RegistrySink  # start-up: see the module docstring
    from kiln.image.schema1_sink import Schema1Sink

    with registry_client(ctx, options) as client:
        events = _PushEvents(ctx)
        sink = RegistrySink(
            client,
            target,
            mount_from=mounts,
            progress=events,
            on_bytes=events.sent,
            tmp_dir=ctx.tmpdir,
            config_digest=img.manifest.config.digest,
            annotations=annotations,
        )
        dst: Any = sink
        if fmt == "v2s1":
            key = schema1_signing_key(ctx.store.root)
            dst = Schema1Sink(sink, key, img.config, target.path, target.tag or "")
        try:
            if fmt == "v2s1" and compression is None:  # gzip layers go up as they are
                sink.push_layers(img, workers)
            if as_is:  # layers and config side by side; copy_image then finds them present
                sink.push_layers(img, workers, config=True)
            res = copy_image(
                img,
                dst,
                image_format="docker" if fmt == "v2s1" else fmt,
                compression=None if as_is else compression,
                verify=False,
                tmp_dir=ctx.tmpdir,
            )
        except KilnError as exc:
            raise type(exc)(f"pushing {image} to docker://{target}: {exc}") from None
    digest = str(sink.manifest_digest or res.manifest_digest)
    ev.step("Writing manifest to image destination", digest=digest)
    with contextlib.suppress(KilnError):  # what the repository has it as, converted or not
        ctx.store.add_repo_digest(img.id, f"{target.name}@{digest}")
    image_events.record(ctx, "push", str(target), image)
    if digestfile:
        write_output(digestfile, digest.encode())
    return PushResult(
        img.id, digest, f"docker://{target}", list(img.record.names), sink.manifest_size
    )


# -- login, logout, search ----------------------------------------------------------------------


def login(
    ctx: Context | None,
    registry: str,
    username: str,
    password: str,
    *,
    options: RegistryOptions | None = None,
) -> str:
    """Check the credentials against ``registry`` and store them (in ``options.authfile``,
    else the default auth file); returns the auth file."""
    from kiln.registry.login import login as registry_login  # start-up: see the docstring

    opts = registry_options(ctx, options)
    return registry_login(
        registry, username, password, authfile=opts.authfile, **_connection_settings(opts)
    )


def verify_login(
    ctx: Context | None,
    registry: str,
    username: str,
    password: str,
    *,
    identity_token: str = "",
    options: RegistryOptions | None = None,
) -> str:
    """Check the credentials (a password, or an identity token) against ``registry`` and
    keep them nowhere; returns the host."""
    from kiln.registry.login import verify_login  # start-up: see the module docstring

    opts = registry_options(ctx, options)
    return verify_login(
        registry, username, password, identity_token=identity_token, **_connection_settings(opts)
    )


def docker_login(
    ctx: Context | None, registry: str, cred: Credential, *, options: RegistryOptions | None = None
) -> str:
    """The Docker API's ``POST /auth``: check ``cred`` against ``registry`` as
    :func:`verify_login` does and keep it nowhere; returns the identity token dockerd
    answers with (the refresh token the token server issued, else ``cred``'s, else "")."""
    from kiln.registry.login import docker_login  # start-up: see the module docstring

    opts = registry_options(ctx, options)
    # what verify_login uses: no stored credentials
    login_options = RegistryOptions(**_connection_settings(opts))
    return docker_login(registry, cred, login_options)


def _connection_settings(opts: RegistryOptions) -> dict[str, Any]:
    """The settings of ``opts`` a login check connects with (TLS, registries.conf,
    retries): the same for ``login``, ``verify_login`` and ``docker_login``."""
    return {
        "tls_verify": opts.tls_verify,
        "cert_dir": opts.cert_dir,
        "registries_conf": opts.registries_conf,
        "retries": opts.retries,
        "retry_delay": opts.retry_delay,
        "retry_backoff": opts.retry_backoff,
    }


def default_login_registry(ctx: Context | None, options: RegistryOptions | None = None) -> str:
    """The registry a login or logout naming none means, as in podman: the first
    unqualified-search registry of registries.conf (docker.io without a file)."""
    from kiln.registry import registries_conf  # start-up: see the module docstring

    conf = registries_conf.load(registry_options(ctx, options).registries_conf)
    if not conf.search:
        raise InvalidArgument("no registries found in registries.conf, a registry must be provided")
    return conf.search[0]


def get_login(ctx: Context | None, registry: str, *, authfile: str | None = None) -> str:
    """The username stored for ``registry``; NotFound when not logged in."""
    from kiln.registry.login import get_login as registry_get_login  # start-up: see the docstring

    opts = registry_options(ctx, RegistryOptions(authfile=authfile))
    return registry_get_login(registry, authfile=opts.authfile)


def stored_login(
    ctx: Context | None, registry: str, *, authfile: str | None = None
) -> tuple[str, str] | None:
    """The username and password stored for ``registry`` (what a bare ``login`` checks
    again, as podman's does); None when there are none or only a token."""
    from kiln.registry.login import stored_login  # start-up: see the module docstring

    opts = registry_options(ctx, RegistryOptions(authfile=authfile))
    cred = stored_login(registry, authfile=opts.authfile)
    if cred is None or not (cred.username and cred.password):
        return None
    return cred.username, cred.password


def logout(
    ctx: Context | None, registry: str | None, *, authfile: str | None = None, all: bool = False
) -> list[str]:
    """Forget the credentials for ``registry`` (or all); NotFound when not logged in."""
    from kiln.registry.login import logout as registry_logout  # start-up: see the docstring

    opts = registry_options(ctx, RegistryOptions(authfile=authfile))
    return registry_logout(registry, authfile=opts.authfile, all=all)


def _filter(results: list, filters: Sequence[str]) -> list:
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep:
            raise InvalidArgument(f'invalid filter "{f}": expected key=value')
        if key == "stars":
            try:
                n = int(value)
            except ValueError:
                raise InvalidArgument(f'invalid filter "{f}": stars must be a number') from None
            results = [r for r in results if r.stars >= n]
        elif key in ("is-official", "is-automated"):
            if value.lower() not in ("true", "false"):
                raise InvalidArgument(f'invalid filter "{f}": use true or false')
            want = value.lower() == "true"
            attr = "official" if key == "is-official" else "automated"
            results = [r for r in results if getattr(r, attr) == want]
        else:
            raise InvalidArgument(f'invalid filter "{key}": use is-official, is-automated or stars')
    return results


def search(
    ctx: Context | None,
    term: str,
    *,
    limit: int = 25,
    filters: Sequence[str] = (),
    list_tags: bool = False,
    options: RegistryOptions | None = None,
) -> list[Any]:
    """``/v1/search`` (else the catalog) of ``term``'s registry or every search registry.

    ``list_tags``: ``term`` names one repository; returns its tags as TagResult.
    """
    if not term:
        raise InvalidArgument("search needs a term")
    if limit is not None and limit < 0:
        raise InvalidArgument(f"invalid --limit {limit}: it must not be negative")
    with registry_client(ctx, options) as client:
        if list_tags:
            if filters:
                raise InvalidArgument("filters cannot be used with --list-tags")
            ref = Reference.parse(term)
            if ref.digest or ":" in term.rsplit("/", 1)[-1]:
                raise InvalidArgument(f"{term}: --list-tags takes a repository without tag")
            tags = client.list_tags(ref)
            return [TagResult(ref.name, t) for t in tags[: limit or None]]
        found = client.search(term, limit=0)
        return _filter(found, filters)[: limit or None]


__all__ = [
    "PULL_POLICIES",
    "PullResult",
    "PushResult",
    "TagResult",
    "ensure_image",
    "login",
    "logout",
    "pull",
    "pull_candidates",
    "push",
    "push_compression",
    "push_format",
    "registry_client",
    "registry_options",
    "search",
]
