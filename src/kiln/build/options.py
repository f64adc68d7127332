"""What a build is asked to do (``BuildOptions``) and what it gives back (``BuildResult``).

Field names follow ``podman build``'s flags. ``kiln.ops.build.build`` takes these; the CLI
and the REST API fill them in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import field
from typing import TYPE_CHECKING, Any, BinaryIO

from kiln.runtime.options import RunSettings
from kiln.util.arguments import as_path, check_string_map, string_list
from kiln.util.choices import Compression, ImageFormat, PullPolicy
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.registry.options import RegistryOptions

__all__ = ["ENTITLEMENTS", "BuildOptions", "BuildResult", "default_jobs"]

OUTPUT_TYPES = ("local", "tar", "oci", "docker", "image", "registry")
# BuildKit's entitlements: privileges a Dockerfile may ask for only when the person
# running the build grants them with --allow
ENTITLEMENTS = ("network.host", "security.insecure")


def default_jobs() -> int:
    """Stages built at once by default: 4, enough for the common fan-out of independent
    stages, which mostly wait on processes and disk rather than on Python."""
    return 4


@dataclass
class BuildOptions:
    """Everything one build is asked to do."""

    context: str = "."  # a directory, "-" (a tar on stdin) or an http(s) URL of a tar
    context_stream: BinaryIO | None = None  # the tar for context "-" when not stdin (the API)
    # --build-context NAME=VALUE: a directory, an http(s) URL of a tar, container-image://REF
    build_contexts: dict[str, str] = field(default_factory=dict)
    dockerfiles: list[str] = field(default_factory=list)  # [] -> Containerfile, Dockerfile
    dockerfile_text: str | None = None  # the Dockerfile itself (``-f -`` read by the caller)
    # the API: ``dockerfiles`` (and the default names) are files inside the context, read
    # in-root; an absolute path, ``..`` out of it or a symlink leading out is refused.
    # The command line leaves it False: ``-f`` may name any file, as in podman.
    dockerfile_in_context: bool = False
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    image_format: ImageFormat = ImageFormat.OCI
    pull: PullPolicy = PullPolicy.MISSING
    no_cache: bool = False
    # --no-cache-filter: stages (names, case-insensitive, or indexes) whose steps are not
    # read from the cache; what they build is still stored in it (BuildKit's flag)
    no_cache_filter: list[str] = field(default_factory=list)
    layers: bool = True
    # with layers, metadata steps are images too, as Docker's classic builder makes them:
    # each step's image is the parent of the next (the Docker API's builds)
    image_per_step: bool = False
    squash: bool = False
    squash_all: bool = False
    iidfile: str | None = None
    timestamp: int | None = None  # --timestamp or SOURCE_DATE_EPOCH
    # the environment's SOURCE_DATE_EPOCH (the command line reads it): the timestamp unless
    # --timestamp is given, and the value ``ARG SOURCE_DATE_EPOCH`` gets unless a
    # --build-arg gives one, as BuildKit (buildx) and buildah 1.41+ pass it
    source_date_epoch: int | None = None
    platform: str | None = None
    # several platforms (--platform a,b): one image each, built in parallel up to ``jobs``
    # and, with ``manifest``, joined in that list (kiln.ops.build_platforms)
    platforms: list[str] = field(default_factory=list)
    all_platforms: bool = False  # every platform the base images' lists offer
    manifest: str | None = None  # the manifest list the images are added to (made if new)
    allow: tuple[str, ...] = ()  # entitlements granted (ENTITLEMENTS)
    # how RUN steps run: network (RUN --network overrides per step), isolation, runtime,
    # hosts, DNS, capabilities, ulimits and resources (the flags ``kiln run`` also takes)
    run: RunSettings = field(default_factory=RunSettings)
    secrets: list[str] = field(default_factory=list)  # "id=x,src=path" | "id=x,env=VAR"
    ssh: list[str] = field(default_factory=list)  # "default" | "id" | "id=socket|key[,key]"
    volumes: list[str] = field(default_factory=list)  # -v HOST:CTR[:OPTS] for every RUN
    quiet: bool = False
    outputs: list[str] = field(default_factory=list)  # type=local,dest=DIR | tar | oci | docker
    compression: Compression = Compression.GZIP
    jobs: int | None = None  # None -> default_jobs()
    rm: bool = True  # remove intermediate containers after a successful build
    force_rm: bool = True  # ... and after a failed one
    cancel: threading.Event | None = None
    # (reference, policy[, platform]) -> image id; the platform is passed when one is asked for
    puller: Callable[..., str] | None = None
    # registry caches and pushes (``kiln.build.cache_spec``; ``kiln.ops.build_share``)
    cache_from: list[str] = field(
        default_factory=list
    )  # type=registry,ref=R | type=local,src=D | R
    cache_to: list[str] = field(default_factory=list)  # ...,mode=min|max | type=inline
    push: bool = False  # push each tag after the build (buildx's --push)
    # the registries of pulls, caches and pushes: --tls-verify, --cert-dir, --authfile,
    # --creds, and an API client's X-Registry-Config / X-Registry-Auth (``auths``, this
    # build only, never written anywhere); None: the defaults (and no registry code loaded
    # by a build that pulls nothing)
    registry: RegistryOptions | None = None
    cache_lookup: Callable[[str], str | None] | None = None  # key -> image id (set by ops)
    on_built: Callable[[Any, str], None] | None = None  # (executor, image id), before the ID line
    tmpdir: str | None = None
    # run the build checks (kiln.build.checks) first: their findings are reported after the
    # build, and with ``# check=error=true`` any finding fails it before anything runs
    checks: bool = False
    # internal: False takes the materialising path for every COPY/ADD (a working container,
    # then a layer diff) instead of writing a layer straight from the context
    # (kiln.build.copy_direct); tests compare both paths' layers with it
    direct_copy: bool = True
    # internal: the smallest file (bytes) whose content a direct COPY's cache key leaves to
    # the layer writer, so it is read once (kiln.build.layer_first); 0 turns this off
    write_first_at: int = 32 << 20

    def __post_init__(self) -> None:
        # the one check of these words, whoever fills the options in (CLI, API, library)
        self.image_format = ImageFormat.parse(self.image_format)
        self.pull = PullPolicy.parse(self.pull)
        self.compression = Compression.parse(self.compression)
        self.context = as_path(self.context)  # a script's pathlib.Path
        if not isinstance(self.dockerfiles, str):
            self.dockerfiles = [as_path(f) for f in self.dockerfiles]
        _check_strings(self)


# what a script may get wrong that the CLI and the API never do (their parsers make these):
# a number as a build argument failed deep in the build (a string as a list: string_list)
_LISTS = ("dockerfiles", "tags", "platforms", "secrets", "ssh", "volumes", "outputs",
          "cache_from", "cache_to", "no_cache_filter", "allow")  # fmt: skip
_MAPPINGS = ("build_args", "labels", "annotations", "build_contexts")


def _check_strings(opts: BuildOptions) -> None:
    """Refuse a string where a list of strings goes, and anything but strings in a list or
    mapping of them (InvalidArgument, naming the field)."""
    for name in _LISTS:
        string_list(getattr(opts, name), f"BuildOptions.{name}")
    for name in _MAPPINGS:
        check_string_map(getattr(opts, name), f"BuildOptions.{name}")


@dataclass
class BuildResult:
    """What one build produced."""

    image_id: str  # "sha256:<64 hex>"
    names: list[str] = field(default_factory=list)
    stage_images: dict[str, str] = field(default_factory=dict)  # stage name/index -> image id
    cache_hits: int = 0
    steps: int = 0
    warnings: list[str] = field(default_factory=list)
    manifest_digest: str = ""
    platform_images: dict[str, str] = field(default_factory=dict)  # platform -> image id
    manifest_list: str = ""  # the list's ID when the build made or amended one
    record_id: str = ""  # the build's record in the store (``kiln build history``)
