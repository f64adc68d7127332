"""What a stage and its dispatchers may ask of the build they belong to.

``StageRun`` and the ``dispatch_*`` modules receive a ``BuildServices`` instead of the
``Executor`` (its one implementation): resolve an image, open a root filesystem, read
the context, run a process, make a working container, record a cache entry, report
progress. They change the build only through these calls; the executor's own state
(results of other stages, the cache log, the working containers to remove) stays its own.

This module holds types only: nothing here is imported at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kiln.build.context import BuildContext
    from kiln.build.mounts import Mount as RunMount
    from kiln.build.options import BuildOptions
    from kiln.build.progress import Progress
    from kiln.build.run_mounts import MountSet
    from kiln.build.stages import BuildPlan, Stage
    from kiln.container import Builder
    from kiln.image import StoreImage
    from kiln.oci import ImageConfig
    from kiln.runtime import Mount
    from kiln.store import Store

__all__ = ["BuildServices"]


class BuildServices(Protocol):
    # -- the build's settings (read only) ----------------------------------------------

    @property
    def opts(self) -> BuildOptions: ...

    @property
    def dockerfile_name(self) -> str:
        """The Containerfile's name, for ``Containerfile:N:`` error prefixes."""
        ...

    @property
    def key_settings(self) -> Mapping[str, Any]:
        """Build settings every cache key holds (format, compression, timestamp, platform)."""
        ...

    @property
    def tmpdir(self) -> str | None: ...

    @property
    def plan(self) -> BuildPlan:
        """The stages the build runs and what each needs of the others."""
        ...

    # -- the context ------------------------------------------------------------------

    @property
    def context(self) -> BuildContext: ...

    def named_dir(self, ref: str | None) -> BuildContext | None:
        """The directory a ``--build-context`` of this name is, if it is one."""
        ...

    # -- images -----------------------------------------------------------------------

    def base_image(self, ref: str, platform: str | None = None) -> str:
        """The image ID ``FROM ref`` names (a named context's image, else by pull policy)."""
        ...

    def stage_image(self, index: int) -> str:
        """The image an earlier stage built."""
        ...

    def ref_image(self, ref: str) -> str:
        """The image a ``--from``/``from=`` names (a named context, a stage or an image)."""
        ...

    def open_image(self, image_id: str) -> StoreImage: ...

    def open_ref_root(self, ref: str) -> AbstractContextManager[str]:
        """The root filesystem a ``--from`` names, mounted read-only while in use."""
        ...

    @property
    def snapshot_driver(self) -> str:
        """The snapshotter's driver: "overlay" (layers are overlay upper dirs) or "copy"."""
        ...

    def open_image_root(self, image_id: str | None) -> AbstractContextManager[str]:
        """An image's root filesystem (None: scratch's, empty), read-only while in use."""
        ...

    def stage_platform(self, stage: Stage) -> str: ...

    def scratch_config(self, platform: str | None = None) -> ImageConfig:
        """The config of ``FROM scratch``."""
        ...

    # -- the build cache ----------------------------------------------------------------

    @property
    def store(self) -> Store:
        """Cache entries, their recorded inputs and the images they name."""
        ...

    def record_cache(self, stage: int, key: str, image_id: str, *, hit: bool) -> None:
        """A step's cache entry, hit or new, for ``--cache-to`` and the hit count."""
        ...

    # -- working containers and processes ------------------------------------------------

    def check_cancel(self) -> None:
        """Raise ``Cancelled`` once the build is cancelled."""
        ...

    def new_builder(self, image_id: str | None) -> Builder:
        """A working container on ``image_id``, removed at the end of the build if not before."""
        ...

    def release_builder(self, b: Builder) -> None:
        """Remove a working container ``new_builder`` made (errors ignored)."""
        ...

    def run_mounts(
        self, specs: tuple[RunMount, ...], from_ids: Mapping[str, str]
    ) -> AbstractContextManager[MountSet]:
        """The runtime mounts of one RUN (context, stages, caches, secrets, ssh, tmpfs)."""
        ...

    def run_process(
        self, b: Builder, argv: list[str], env: dict[str, str], mounts: list[Mount],
        network: str, pos: int, security: str = "sandbox",
    ) -> int:  # fmt: skip
        """Run ``argv`` in ``b``, its output reported as progress; returns the exit code."""
        ...

    # -- progress ---------------------------------------------------------------------

    @property
    def progress(self) -> Progress: ...
