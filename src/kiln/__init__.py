"""kiln: build OCI and Docker images without a daemon and keep them in a local store.

The library API is the curated ``kiln.__all__`` below; every name is imported on
first use, so ``import kiln`` costs almost nothing::

    import kiln

    with kiln.open_context() as ctx:
        for row in kiln.list_images(ctx):
            print(row.repository, row.tag, row.id[:12])

The ``with`` block closes the context (its scratch directory, its databases); a
``kiln.Context`` made directly needs ``ctx.close()`` when done with.

Everything else (``kiln.store``, ``kiln.image``, ...) is internal and may change.
The package is typed (``py.typed``): a type checker reads the names from the
``TYPE_CHECKING`` imports below, which a test keeps equal to the lazy table.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from kiln.util.exports import lazy_exports

if TYPE_CHECKING:  # what a type checker sees of the lazy names below
    from kiln.container import Builder
    from kiln.container.config_flags import ConfigSettings
    from kiln.errors import (
        AlreadyExists,
        Cancelled,
        Conflict,
        DigestMismatch,
        InvalidArgument,
        KilnError,
        NotFound,
        ProcessFailed,
        Unauthorized,
        Unavailable,
    )
    from kiln.oci import Digest, Platform, Reference
    from kiln.ops.archives import (
        import_image,
        load_images,
        save_images,
    )
    from kiln.ops.build import BuildOptions, BuildResult, build
    from kiln.ops.config import Config
    from kiln.ops.containers import (
        commit_container,
        configure_container,
        copy_to_container,
        create_container,
        diff_container,
        export_container,
        inspect_container,
        list_containers,
        remove_containers,
        run_in_container,
    )
    from kiln.ops.context import Context, open_context
    from kiln.ops.events import (
        CallbackSink,
        Event,
        EventSink,
        ListSink,
        NullSink,
    )
    from kiln.ops.file_transfer import pull_image, push_image
    from kiln.ops.images import (
        image_diff,
        image_exists,
        image_history,
        image_tree,
        inspect_image,
        list_images,
        prune_images,
        remove_images,
        tag_image,
        untag_image,
    )
    from kiln.ops.manifests import add as add_to_manifest_list
    from kiln.ops.manifests import create as create_manifest_list
    from kiln.ops.manifests import inspect as inspect_manifest_list
    from kiln.ops.manifests import push as push_manifest_list
    from kiln.ops.manifests import remove as remove_from_manifest_list
    from kiln.ops.options import (
        PullRequest,
        RegistryOptions,
        RunSettings,
    )
    from kiln.ops.registry import (
        ensure_image,
        login,
        logout,
    )
    from kiln.ops.registry import search as search_registry
    from kiln.ops.transports import parse_transport

__version__ = "0.1.0"

# public name -> "module" (same attribute name) or "module:attribute"
_EXPORTS: dict[str, str] = {
    # wiring and events
    "Context": "kiln.ops.context",
    "open_context": "kiln.ops.context",
    "Config": "kiln.ops.config",
    "Event": "kiln.ops.events",
    "EventSink": "kiln.ops.events",
    "NullSink": "kiln.ops.events",
    "ListSink": "kiln.ops.events",
    "CallbackSink": "kiln.ops.events",
    "parse_transport": "kiln.ops.transports",
    # image store use cases
    "list_images": "kiln.ops.images",
    "inspect_image": "kiln.ops.images",
    "image_history": "kiln.ops.images",
    "image_exists": "kiln.ops.images",
    "tag_image": "kiln.ops.images",
    "untag_image": "kiln.ops.images",
    "remove_images": "kiln.ops.images",
    "prune_images": "kiln.ops.images",
    "image_tree": "kiln.ops.images",
    "image_diff": "kiln.ops.images",
    "save_images": "kiln.ops.archives",
    "load_images": "kiln.ops.archives",
    "import_image": "kiln.ops.archives",
    "push_image": "kiln.ops.file_transfer",
    "pull_image": "kiln.ops.file_transfer",
    "PullRequest": "kiln.ops.options",  # what pull_image and ensure_image take
    "RegistryOptions": "kiln.ops.options",  # TLS, credentials, retries of registry calls
    # builds
    "build": "kiln.ops.build",
    "BuildOptions": "kiln.ops.build",
    "BuildResult": "kiln.ops.build",
    # working containers
    "Builder": "kiln.container",
    "RunSettings": "kiln.ops.options",  # create_container's settings for every run
    "ConfigSettings": "kiln.container.config_flags",  # what configure_container sets
    "create_container": "kiln.ops.containers",
    "list_containers": "kiln.ops.containers",
    "inspect_container": "kiln.ops.containers",
    "run_in_container": "kiln.ops.containers",
    "copy_to_container": "kiln.ops.containers",
    "configure_container": "kiln.ops.containers",
    "commit_container": "kiln.ops.containers",
    "export_container": "kiln.ops.containers",
    "diff_container": "kiln.ops.containers",
    "remove_containers": "kiln.ops.containers",
    # registries
    "login": "kiln.ops.registry",
    "logout": "kiln.ops.registry",
    "search_registry": "kiln.ops.registry:search",
    # manifest lists (podman manifest)
    "create_manifest_list": "kiln.ops.manifests:create",
    "add_to_manifest_list": "kiln.ops.manifests:add",
    "remove_from_manifest_list": "kiln.ops.manifests:remove",
    "inspect_manifest_list": "kiln.ops.manifests:inspect",
    "push_manifest_list": "kiln.ops.manifests:push",
    "ensure_image": "kiln.ops.registry",
    # vocabulary
    "Reference": "kiln.oci",
    "Digest": "kiln.oci",
    "Platform": "kiln.oci",
    # errors
    "KilnError": "kiln.errors",
    "NotFound": "kiln.errors",
    "AlreadyExists": "kiln.errors",
    "Conflict": "kiln.errors",
    "InvalidArgument": "kiln.errors",
    "DigestMismatch": "kiln.errors",
    "Unauthorized": "kiln.errors",
    "Unavailable": "kiln.errors",
    "ProcessFailed": "kiln.errors",
    "Cancelled": "kiln.errors",
}

# spelled out for type checkers (they read no expression); a test keeps it _EXPORTS
__all__ = [
    "AlreadyExists",
    "BuildOptions",
    "BuildResult",
    "Builder",
    "CallbackSink",
    "Cancelled",
    "Config",
    "ConfigSettings",
    "Conflict",
    "Context",
    "Digest",
    "DigestMismatch",
    "Event",
    "EventSink",
    "InvalidArgument",
    "KilnError",
    "ListSink",
    "NotFound",
    "NullSink",
    "Platform",
    "ProcessFailed",
    "PullRequest",
    "Reference",
    "RegistryOptions",
    "RunSettings",
    "Unauthorized",
    "Unavailable",
    "__version__",
    "add_to_manifest_list",
    "build",
    "commit_container",
    "configure_container",
    "copy_to_container",
    "create_container",
    "create_manifest_list",
    "diff_container",
    "ensure_image",
    "export_container",
    "image_diff",
    "image_exists",
    "image_history",
    "image_tree",
    "import_image",
    "inspect_container",
    "inspect_image",
    "inspect_manifest_list",
    "list_containers",
    "list_images",
    "load_images",
    "login",
    "logout",
    "open_context",
    "parse_transport",
    "prune_images",
    "pull_image",
    "push_image",
    "push_manifest_list",
    "remove_containers",
    "remove_from_manifest_list",
    "remove_images",
    "run_in_container",
    "save_images",
    "search_registry",
    "tag_image",
    "untag_image",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


# ``kiln.build`` names both the build use case and the Dockerfile engine's package, and
# Python sets a package's attribute to a subpackage the first time that is imported: after
# ``kiln.BuildOptions`` (which imports the engine), ``kiln.build(ctx, opts)`` called a
# module. So the one attribute is the package, made callable as the use case.


class _BuildPackage(types.ModuleType):
    """The package ``kiln.build``, callable as the use case ``kiln.ops.build.build``."""

    def __call__(self, ctx: Context, opts: BuildOptions) -> BuildResult:
        from kiln.ops.build import build as use_case  # start-up: as every name here

        return use_case(ctx, opts)


class _Kiln(types.ModuleType):
    """This package's module: when its ``build`` is set to the package (the import system,
    importing it) or to the use case (the lazy lookup), it is the callable package. Anything
    else (a test's patch) is set as given."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "build":
            package = sys.modules.get("kiln.build")  # imported by then, either way
            use_case = getattr(sys.modules.get("kiln.ops.build"), "build", None)
            if package is not None and (value is package or value is use_case):
                package.__class__ = _BuildPackage
                value = package
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Kiln
