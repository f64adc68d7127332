"""Builds for several platforms: one image per platform, joined in a manifest list.

``kiln build --platform linux/amd64,linux/arm64 --manifest NAME`` (podman's form) and
``--all-platforms`` (every platform the base images' lists all offer) come here from
``kiln.ops.build.build``:

- ``target_platforms(ctx, opts, parsed)``: the platforms asked for, normalised and
  without repeats; None for an ordinary one-platform build with no list.
- ``build_platforms(ctx, opts, platforms, run)``: ``run(opts, progress)`` once per
  platform (the whole Dockerfile, every stage, with that platform's
  ``TARGETPLATFORM``...; a foreign platform's RUN goes through QEMU), on up to
  ``--jobs`` threads at once. The build's progress lines are prefixed ``[os/arch] ``,
  as buildah prints them. The first platform to fail stops the others and fails the
  build, its error prefixed with the platform; the list is only made or changed once
  every platform is built, so a failed build never leaves a partial list named.
  With ``--manifest`` the images join the list (made if new; an existing entry for
  the same platform is replaced, as for a rebuild); without it they stay untagged.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kiln.build.args import BuildArgs
from kiln.build.executor import BuildCancel, normalize_tag
from kiln.build.options import BuildOptions, BuildResult, default_jobs
from kiln.build.progress import Progress
from kiln.build.stages import plan
from kiln.errors import Cancelled, InvalidArgument, KilnError, NotFound
from kiln.oci import Platform
from kiln.ops.events import Event

if TYPE_CHECKING:
    from kiln.build.parser import ParsedDockerfile
    from kiln.build.progress import Progress
    from kiln.ops.context import Context

__all__ = ["build_platforms", "target_platforms"]

Run = Callable[[BuildOptions, "Progress"], BuildResult]


def _split(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            if item.strip():
                text = str(Platform.parse(item.strip()))
                if text not in out:
                    out.append(text)
    return out


def target_platforms(
    ctx: Context, opts: BuildOptions, parsed: ParsedDockerfile
) -> list[str | None] | None:
    """The platforms to build, or None for one plain build (``opts.platform`` as is).
    ``[None]``: one build for the default platform whose image joins ``opts.manifest``."""
    given = _split([opts.platform] if opts.platform else []) + _split(opts.platforms)
    given = list(dict.fromkeys(given))
    if opts.all_platforms:
        if given:
            raise InvalidArgument("--all-platforms and --platform cannot be used together")
        given = base_platforms(ctx, opts, parsed)
    if len(given) > 1 and opts.tags:
        raise InvalidArgument(
            "--tag names one image, and several platforms make one image each: "
            "use --manifest NAME to join them in a list by that name"
        )
    if opts.manifest:  # a bad list name fails now, not once every platform is built
        try:
            normalize_tag(opts.manifest)
        except InvalidArgument as exc:
            raise InvalidArgument(f"--manifest {opts.manifest}: {exc}") from None
    if len(given) > 1 and opts.outputs:
        raise InvalidArgument("--output with several platforms is not supported: build each")
    if len(given) <= 1 and not opts.manifest:
        if given:
            opts.platform = given[0]
        return None
    return list(given) if given else [None]


def base_platforms(ctx: Context, opts: BuildOptions, parsed: ParsedDockerfile) -> list[str]:
    """Every platform that each base image of the build offers (``--all-platforms``): a
    base that is a manifest list offers its entries' platforms, a plain image its own.
    Bases of stages with a fixed ``FROM --platform`` do not count."""

    stages = plan(parsed, BuildArgs(opts.build_args), opts.target).stages
    common: list[str] | None = None
    for stage in stages:
        if stage.base_stage is not None or stage.is_scratch or stage.platform:
            continue
        offered = _offered(ctx, stage.base_expanded)
        common = offered if common is None else [p for p in common if p in offered]
    if not common:
        raise InvalidArgument(
            "--all-platforms: the base images offer no platform in common"
            if common is not None
            else "--all-platforms: no stage has a base image whose platforms could be used"
        )
    return common


def _offered(ctx: Context, ref: str) -> list[str]:
    """The platforms a base offers: a stored list's entries', a stored image's own, else
    the entries of the list its registry has under that name."""

    from kiln.ops import manifests  # start-up: only --all-platforms and --manifest use it

    if manifests.exists(ctx, ref):
        index = manifests.document(ctx, ref)
        return _split([str(m.platform) for m in index.manifests if m.platform is not None])
    try:
        image = ctx.store.resolve_image(ref)
    except NotFound:
        image = None
    if image is not None:
        return _split([image.platform]) if image.platform else []
    doc = manifests.inspect(ctx, ref)  # the registry's document (NotFound if none)
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise InvalidArgument(
            f"--all-platforms: {ref} is a single image, not a list: give --platform"
        )
    found = []
    for entry in entries:
        plat = entry.get("platform") if isinstance(entry, dict) else None
        # entries with os "unknown" are BuildKit's attestations, not images
        if isinstance(plat, dict) and plat.get("architecture") and plat.get("os") != "unknown":
            found.append(str(Platform.from_json(plat)))
    return _split(found)


def build_platforms(
    ctx: Context, opts: BuildOptions, platforms: list[str | None], run: Run
) -> BuildResult:
    stop = BuildCancel(opts.cancel)  # one platform failing stops the others
    several = len(platforms) > 1

    def one(platform: str | None) -> BuildResult:
        popts = dataclasses.replace(
            opts, platform=platform, platforms=[], all_platforms=False, manifest=None,
            cancel=stop, iidfile=None, build_args=dict(opts.build_args),
        )  # fmt: skip
        progress = _progress(ctx, platform if several else None)
        return run(popts, progress)

    jobs = max(1, min(opts.jobs or default_jobs(), len(platforms)))
    # start-up: the thread pool only for a build of several platforms
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    results: dict[int, BuildResult] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="kiln-platform") as pool:
        # each in a copy of this context: its writes join the build's lease
        futures = {
            pool.submit(contextvars.copy_context().run, one, p): n for n, p in enumerate(platforms)
        }
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                stop.set()
            wait(futures)
        except BaseException:  # Ctrl-C: stop every platform's RUN, then go
            stop.set()
            raise
    failures = [(futures[f], f.exception()) for f in futures if f.exception() is not None]
    if failures:
        # the platform that failed first is the one that stopped the rest (Cancelled)
        failures.sort(key=lambda item: isinstance(item[1], Cancelled))
        n, exc = failures[0]
        raise _named(exc, platforms[n]) from None
    for f, n in futures.items():
        results[n] = f.result()
    ordered = [results[n] for n in range(len(platforms))]
    return _finish(ctx, opts, platforms, ordered)


def _named(exc: BaseException | None, platform: str | None) -> BaseException:
    """The error with the platform it happened for in front."""
    assert exc is not None
    if not isinstance(exc, KilnError) or platform is None:
        return exc
    named = type(exc).__new__(type(exc))  # the same class and fields (an exit code...)
    named.__dict__.update(exc.__dict__)
    named.message = f"building for {platform}: {exc.message}"
    named.args = (named.message, *exc.args[1:])
    return named


def _progress(ctx: Context, platform: str | None) -> Progress:
    """Build events, prefixed ``[os/arch] `` for one platform of several; each platform's
    own final image ID becomes a step line (the build's result comes at the end)."""

    label = f"[{platform}] " if platform else ""

    def emit(kind: str, message: str, data: dict[str, Any]) -> None:
        if platform:
            data = {**data, "platform": platform}
        if kind == "result" and data.get("type") == "image":
            kind, data = "step", {**data, "type": "platform-image"}
        if kind == "step" and message:  # the empty ones (a step's end...) stay empty
            message = label + message
        ctx.events.emit(Event(kind, message, data))

    return Progress(emit)


def _finish(
    ctx: Context, opts: BuildOptions, platforms: list[str | None], results: list[BuildResult]
) -> BuildResult:
    by_platform = {}
    for platform, res in zip(platforms, results, strict=True):
        by_platform[platform or ctx.store.get_image(res.image_id).platform] = res.image_id
    last = results[-1]
    warnings = list(dict.fromkeys(w for res in results for w in res.warnings))
    result = BuildResult(
        image_id=last.image_id, names=list(last.names), cache_hits=sum(r.cache_hits for r in results),
        steps=sum(r.steps for r in results), warnings=warnings,
        manifest_digest=last.manifest_digest, platform_images=by_platform,
        stage_images=dict(last.stage_images) if len(results) == 1 else {},
    )  # fmt: skip
    if opts.manifest:
        rec = _join(ctx, opts, [r.image_id for r in results])
        result.image_id = result.manifest_list = rec.id
        result.names = list(rec.names)
        result.manifest_digest = rec.digest
        ctx.events.emit(
            Event(
                "result",
                rec.id.removeprefix("sha256:"),
                {
                    "type": "image",
                    "image_id": rec.id,
                    "manifest_list": rec.id,
                    "platforms": by_platform,
                },
            )  # fmt: skip
        )
    elif len(results) > 1:
        for platform, image_id in by_platform.items():
            ctx.events.emit(
                Event(
                    "result",
                    image_id.removeprefix("sha256:"),
                    {"type": "image", "image_id": image_id, "platform": platform},
                )  # fmt: skip
            )
    if opts.iidfile:
        # start-up: only --iidfile writes a file
        from kiln.util.output import write_output

        write_output(opts.iidfile, result.image_id.encode())
    return result


def _join(ctx: Context, opts: BuildOptions, image_ids: list[str]) -> Any:
    """Add the images to the list ``opts.manifest`` (made if new), replacing entries for the
    same platforms."""
    from kiln.ops import manifest_join  # start-up: as in _offered

    assert opts.manifest is not None  # only --manifest builds join a list
    return manifest_join.join(
        ctx, opts.manifest, image_ids, "v2s2" if opts.image_format == "docker" else "oci"
    )
