"""What a build shares with other machines: registry/local/inline build caches
(``--cache-from``, ``--cache-to``) and pushes (``--push``, ``-o type=image|registry``).

``with caches_imported(ctx, opts, progress):`` wraps the build: it refuses bad values, reads each
``--cache-from`` cache's small mapping (never a layer) and installs
``opts.cache_lookup``, which copies a cached image into the store only when a step's key
is found. A cache that is missing, unauthorised, unreachable or corrupt is a warning and
the build goes on without it (as BuildKit's import). ``finish(ctx, opts, executor,
image_id)`` runs after it: names and pushes images, then exports caches — an export
failure fails the build unless the cache says ``ignore-error=true`` (as BuildKit's).

The artifact format is ``kiln.image.build_cache``; pushes are ``kiln.ops.registry.push``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kiln.build.executor import normalize_tag
from kiln.errors import InvalidArgument, KilnError
from kiln.image import open_store_image
from kiln.oci import Reference
from kiln.oci import media_types as mt

if TYPE_CHECKING:
    from kiln.build.cache_spec import CacheSpec
    from kiln.build.options import BuildOptions
    from kiln.build.outputs import ImageOutput
    from kiln.image.build_cache import ImportedCache
    from kiln.ops.context import Context
    from kiln.registry.options import RegistryOptions

__all__ = ["caches_imported", "export_caches", "finish", "push_targets"]

Warn = Callable[[str], None]


def _registry(opts: BuildOptions, insecure: bool = False) -> RegistryOptions:
    """The build's registry options; ``insecure`` (a cache or output's
    ``registry.insecure=true``) turns TLS verification off."""
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.registry.options import RegistryOptions

    options = opts.registry or RegistryOptions()
    return options.merged(tls_verify=False) if insecure else options


@contextlib.contextmanager
def _client(ctx: Context, opts: BuildOptions, insecure: bool) -> Iterator[Any]:
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.ops.registry import registry_options
    from kiln.registry import RegistryClient

    with RegistryClient(registry_options(ctx, _registry(opts, insecure))) as client:
        yield client


def push_targets(opts: BuildOptions) -> list[tuple[str, bool]]:
    """(reference, insecure) of every push the build asks for: ``--push`` pushes each
    ``-t`` name, ``-o type=registry``/``type=image,push=true`` their names."""
    out: list[tuple[str, bool]] = []
    if opts.push:
        if not opts.tags:
            raise InvalidArgument("--push needs a name to push to: give -t REG/REPO:TAG")
        out += [(tag, False) for tag in opts.tags]
    for image in _image_outputs(opts):
        if image.push:
            out += [(name, image.insecure) for name in image.names]
    return out


def _image_outputs(opts: BuildOptions) -> list[ImageOutput]:
    if not opts.outputs:
        return []
    # start-up: only --output names images
    from kiln.build.outputs import image_output

    return [o for o in (image_output(s) for s in opts.outputs) if o is not None]


def _caches_to(opts: BuildOptions) -> list[CacheSpec]:
    if not opts.cache_to and "BUILDKIT_INLINE_CACHE" not in opts.build_args:
        return []
    # start-up: only --cache-to (or BUILDKIT_INLINE_CACHE) exports
    from kiln.build.cache_spec import inline_cache_arg, parse_cache_to

    specs = [parse_cache_to(v) for v in opts.cache_to]
    arg = inline_cache_arg(opts.build_args)
    if arg is not None and not any(s.type == "inline" for s in specs):
        specs.append(arg)
    return specs


def _caches_from(opts: BuildOptions) -> list[CacheSpec]:
    if not opts.cache_from:
        return []
    # start-up: only --cache-from imports
    from kiln.build.cache_spec import parse_cache_from

    return [parse_cache_from(v) for v in opts.cache_from]


# -- before and during the build ----------------------------------------------------------


@contextlib.contextmanager
def caches_imported(ctx: Context, opts: BuildOptions, progress: Any) -> Iterator[None]:
    """Check the cache and push values; while inside, ``opts.cache_lookup`` serves the
    ``--cache-from`` caches (``progress``: the build's, for notes and warnings)."""

    to = _caches_to(opts)
    for spec in to:
        if spec.type == "registry":
            Reference.parse(spec.ref)
    targets = push_targets(opts)
    for name, _ in targets:
        Reference.parse(name)
    inline = [s for s in to if s.type == "inline"]
    if inline and not targets:
        progress.warning(
            f"--cache-to {inline[0].text}: the cache travels with a pushed image; nothing is "
            "pushed (add --push or -o type=registry,name=REF), so no cache is exported"
        )
    froms = _caches_from(opts)
    given = opts.cache_lookup
    with contextlib.ExitStack() as stack:
        if froms and not opts.no_cache:
            found = _open_all(ctx, opts, froms, progress, stack)
            if found:
                opts.cache_lookup = _Lookup(ctx, found, progress.warning, opts.tmpdir)
        try:
            yield
        finally:
            opts.cache_lookup = given


#: the most caches opened at once: each is a registry round trip or a local read
OPEN_AT_ONCE = 8


def _open_all(
    ctx: Context, opts: BuildOptions, specs: list[CacheSpec], progress: Any,
    stack: contextlib.ExitStack,
) -> list[ImportedCache]:  # fmt: skip
    """The caches that open, opened at once (at most ``OPEN_AT_ONCE`` together), so N
    registries that never answer cost one deadline, not N; their notes and warnings in
    the order given. The clients they hold join ``stack``."""
    if len(specs) == 1:  # start-up: no thread for the usual one cache
        return [c for c in [_open(ctx, opts, specs[0], progress, stack)] if c is not None]
    opening = _Opening(len(specs))
    todo = iter(list(enumerate(specs)))

    def work() -> None:
        for i, spec in todo:  # next() on one iterator: each spec is taken once
            own, held = contextlib.ExitStack(), _Held()
            try:
                opening.put(i, (_open(ctx, opts, spec, held, own), held), own)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                own.close()
                opening.put(i, exc, None)

    for n in range(min(OPEN_AT_ONCE, len(specs))):
        run = contextvars.copy_context().run  # in this context, as the build's other threads
        threading.Thread(target=run, args=(work,), name=f"kiln-cache-open-{n}", daemon=True).start()
    results = opening.wait(stack)
    found = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        cache, held = result
        held.replay(progress)
        if cache is not None:
            found.append(cache)
    return found


class _Held:
    """A cache's note or warning, held to be told in the order the caches were given."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    def warning(self, message: str) -> None:
        self.said.append(("warning", message))

    def note(self, message: str) -> None:
        self.said.append(("note", message))

    def replay(self, progress: Any) -> None:
        for kind, message in self.said:
            getattr(progress, kind)(message)


class _Opening:
    """The caches' outcomes as they come from the opening threads. The waiting thread
    takes over each one's clients (into its stack); if it stops waiting (Ctrl-C), a cache
    opened after closes its own, and the daemon threads still waiting die with the process."""

    def __init__(self, count: int) -> None:
        self._results: dict[int, Any] = {}
        self._count = count
        self._done = threading.Condition()
        self._abandoned = False

    def put(self, i: int, outcome: Any, own: contextlib.ExitStack | None) -> None:
        with self._done:
            if self._abandoned:
                if own is not None:
                    own.close()
                return
            self._results[i] = (outcome, own)
            self._done.notify_all()

    def wait(self, stack: contextlib.ExitStack) -> list[Any]:
        try:
            with self._done:
                while len(self._results) < self._count:
                    self._done.wait()
        except BaseException:
            with self._done:
                self._abandoned = True
                owned = [own for _, own in self._results.values() if own is not None]
            for own in owned:
                own.close()
            raise
        out = []
        for i in range(self._count):
            outcome, own = self._results[i]
            if own is not None:
                stack.enter_context(own)
            out.append(outcome)
        return out


def _open(
    ctx: Context, opts: BuildOptions, spec: CacheSpec, progress: Any, stack: contextlib.ExitStack
) -> ImportedCache | None:
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.image.build_cache import open_cache, read_layout_manifest

    try:
        if spec.type == "local":
            # start-up: only a build that shares its cache or result loads registry code
            from kiln.store.oci_layout import OCILayout

            layout = OCILayout(spec.path)
            raw, media_type = read_layout_manifest(layout, spec.tag)
            cache = open_cache(layout, raw, media_type, spec.where)
        else:
            cache = _open_registry(ctx, opts, spec, stack)
    except KilnError as exc:
        progress.warning(f"--cache-from {spec.text}: not using this cache: {exc}")
        return None
    progress.note(f"Importing cache from {spec.where}: {len(cache.entries)} steps")
    return cache


def _open_registry(
    ctx: Context, opts: BuildOptions, spec: CacheSpec, stack: contextlib.ExitStack
) -> ImportedCache:
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.image.build_cache import open_cache
    from kiln.image.registry_source import RegistryBlobs

    ref = Reference.parse(spec.ref)
    # the client serves the cache's blobs until the build ends
    client = stack.enter_context(_client(ctx, opts, spec.insecure))
    raw, media_type, _ = client.get_manifest(ref, accept=tuple(mt.MANIFESTS))
    return open_cache(RegistryBlobs(client, ref), raw, media_type, spec.ref)


class _Lookup:
    """``opts.cache_lookup``: key -> image ID, copying the image in on a hit; a cache
    that fails (a corrupt blob, the registry gone) is warned about and dropped."""

    def __init__(self, ctx: Context, caches: list[ImportedCache], warn: Warn, tmp: str | None):
        self.ctx, self.caches, self.warn, self.tmp = ctx, caches, warn, tmp
        self._lock = threading.Lock()

    def __call__(self, key: str) -> str | None:
        for cache in list(self.caches):
            if key not in cache:
                continue
            try:
                return cache.materialize(key, self.ctx.store, self.tmp)
            except KilnError as exc:
                self.warn(f"--cache-from {cache.where}: not using this cache: {exc}")
                with self._lock, contextlib.suppress(ValueError):
                    self.caches.remove(cache)
        return None


# -- after the build ----------------------------------------------------------------------


def finish(
    ctx: Context, opts: BuildOptions, executor: Any, image_id: str, export: bool = True
) -> None:
    """Name and push the image, then export the caches ``--cache-to`` asks for (unless
    ``export`` is false: a build of several platforms exports once, with
    :func:`export_caches`, after every platform is built)."""

    progress = executor.progress
    warn = progress.warning
    for image in _image_outputs(opts):
        for name in image.names:
            ctx.store.tag(normalize_tag(name), image_id)
    to = _caches_to(opts)
    inline = [s for s in to if s.type == "inline"]
    targets = push_targets(opts)  # none: caches_imported has said no inline cache goes
    if inline and targets and opts.image_format != "oci":
        warn(f"--cache-to {inline[0].text}: the cache rides on the OCI manifest's annotations, "
             "which a Docker v2s2 manifest has not: build with --format oci; no cache exported")  # fmt: skip
        inline = []
    for name, insecure in targets:
        annotations = None
        if inline:
            inline_blobs = functools.partial(_inline_blobs, ctx, opts, executor, name, insecure)
            annotations = _export_guarded(inline[0], warn, inline_blobs)
        _push(ctx, opts, image_id, name, insecure, annotations)
    if export:
        export_caches(ctx, opts, [executor], progress)


def export_caches(ctx: Context, opts: BuildOptions, executors: list[Any], progress: Any) -> None:
    """Export the registry and local caches ``--cache-to`` asks for, one each, holding the
    steps of every executor's build (the platforms of a multi-platform build: their keys
    differ, as their bases do, so one cache serves them all, as BuildKit's does)."""
    for spec in _caches_to(opts):
        if spec.type != "inline":
            work = functools.partial(_export, ctx, opts, executors, spec, progress)
            _export_guarded(spec, progress.warning, work)


def _export_guarded(spec: CacheSpec, warn: Warn, work: Callable[[], Any]) -> Any:
    try:
        return work()
    except KilnError as exc:
        message = f"--cache-to {spec.text}: exporting the build cache: {exc}"
        if spec.ignore_error:
            warn(message)
            return None
        raise type(exc)(message) from None


def _push(ctx, opts, image_id, name, insecure, annotations) -> None:
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.ops.registry import push

    ctx.ev.step(f"Pushing {name}", type="note")
    push(ctx, image_id, name, annotations=annotations, options=_registry(opts, insecure))


def _entries(ctx: Context, executors: list[Any], mode: str) -> list[tuple[str, Any]]:
    """The (key, image) pairs to export: the final stage's steps (min) or every step."""

    chosen: dict[str, str] = {}
    for executor in executors:
        target = executor.plan.target_index
        for stage, key, image_id in executor.cache_log:
            if mode == "max" or stage == target:
                chosen[key] = image_id
    images: dict[str, Any] = {}
    out = []
    for key, image_id in chosen.items():
        if image_id not in images:
            images[image_id] = open_store_image(ctx.store, image_id)
        out.append((key, images[image_id]))
    return out


def _check_compression(spec: CacheSpec, entries: list[tuple[str, Any]], warn: Warn) -> None:
    if spec.level:
        warn(f"--cache-to {spec.text}: compression-level is not applied: layers are exported "
             "as they are stored, so that an importer gets the very same images")  # fmt: skip
    if not spec.compression:
        return
    want = spec.compression  # canonical: BuildKit's "uncompressed" was parsed as "none"
    stored = {mt.layer_compression(d.media_type) for _, img in entries for d in img.layers}
    if stored - {want}:
        warn(f"--cache-to {spec.text}: layers are exported as they are stored "
             f"({', '.join(sorted(stored))}), so that an importer gets the very same images; "
             "build with --compression to choose")  # fmt: skip


def _export(
    ctx: Context, opts: BuildOptions, executors: list[Any], spec: CacheSpec, progress: Any
) -> None:
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.image.build_cache import export_cache

    entries = _entries(ctx, executors, spec.mode)
    _check_compression(spec, entries, progress.warning)
    if not entries:
        progress.warning(f"--cache-to {spec.text}: no step was cached (--layers=false or "
                         "--squash?): the exported cache is empty")  # fmt: skip
    progress.note(f"Exporting cache to {spec.where}: {len(entries)} steps (mode={spec.mode})")
    if spec.type == "local":
        # start-up: only a build that shares its cache or result loads registry code
        from kiln.store.oci_layout import OCILayout

        export_cache(OCILayout(spec.path, create=True), entries, names=[spec.tag])
        return
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.image.registry_sink import RegistrySink

    ref = Reference.parse(spec.ref)
    with _client(ctx, opts, spec.insecure) as client:
        export_cache(RegistrySink(client, ref, tmp_dir=ctx.tmpdir), entries)


def _inline_blobs(ctx, opts, executor, name: str, insecure: bool) -> dict[str, str]:
    """Put the final stage's cache (configs, layers, mapping) into ``name``'s repository;
    returns the annotation that points the pushed image at it."""
    # start-up: only a build that shares its cache or result loads registry code
    from kiln.image.build_cache import INLINE_ANNOTATION, put_cache_blobs
    from kiln.image.registry_sink import RegistrySink

    entries = _entries(ctx, [executor], "min")
    ref = Reference.parse(name)
    with _client(ctx, opts, insecure) as client:
        mdesc, _ = put_cache_blobs(RegistrySink(client, ref, tmp_dir=ctx.tmpdir), entries)
    return {INLINE_ANNOTATION: str(mdesc.digest)}
