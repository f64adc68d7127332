"""``kiln version`` and ``kiln info``: what this kiln is and what it would work with.

Both answer in podman's shapes (``podman version --format json``, ``podman info``), so
``{{.Client.Version}}`` and ``{{.Store.GraphRoot}}`` style templates carry over. The API
versions kiln's server speaks live here, the one home the command line (``kiln version``)
and the server (``/version``) share.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any

from kiln.errors import KilnError, Unavailable
from kiln.util.choices import Isolation
from kiln.util.rootless import is_rootless

if TYPE_CHECKING:
    from kiln.ops.context import Context

DOCKER_API_VERSION = "1.56"  # the Docker Engine API version kiln's server follows
DOCKER_MIN_API_VERSION = "1.24"
LIBPOD_API_VERSION = "4.3.1"  # the libpod REST API shape kiln answers in
LIBPOD_MIN_API_VERSION = "4.0.0"  # podman 4.3's oldest libpod API

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


@functools.cache
def kiln_version() -> str:
    """The installed distribution's version (``0.0.0`` when run from a bare source tree).
    Looked up once per process: the lookup scans sys.path (~1 ms), and the API server
    sends it in a header of every response."""
    try:
        return metadata.version("kiln")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def go_arch() -> str:
    """This machine's architecture as OCI and Go name it (``amd64``, ``arm64``)."""
    machine = platform.machine().lower()
    return _GO_ARCH.get(machine, machine)


def built_at() -> float:
    """When this copy was built or installed: its distribution metadata's time; 0 if unknown."""
    try:
        dist = metadata.distribution("kiln")
    except metadata.PackageNotFoundError:
        return 0.0
    for f in dist.files or ():
        if f.name in ("METADATA", "PKG-INFO"):
            try:
                return os.stat(f.locate()).st_mtime
            except OSError:
                continue
    return 0.0


def version_info() -> dict[str, Any]:
    """``{"Client": {...}}`` as ``podman version --format json`` prints it, with kiln's
    Python version beside the Go fields podman has, and the Docker API version kiln serves."""
    built = built_at()
    return {
        "Client": {
            "Name": "kiln",
            "Version": kiln_version(),
            "APIVersion": DOCKER_API_VERSION,
            "LibpodAPIVersion": LIBPOD_API_VERSION,
            "PythonVersion": platform.python_version(),
            "GitCommit": "",
            "BuiltTime": time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(built)),
            "Built": int(built),
            "OsArch": f"linux/{go_arch()}",
            "Os": "linux",
        }
    }


def system_info(ctx: Context) -> dict[str, Any]:
    """What ``kiln info`` shows: ``host`` (runtime, emulators), ``store`` (root, size,
    snapshot driver and whether overlay works), ``registries`` (the configuration in
    effect) and ``version``. Problems (no runtime, unreadable registries.conf) become
    ``error`` fields, never exceptions: info is what one runs when something is wrong."""
    return {
        "host": _host(),
        "store": _store(ctx),
        "registries": _registries(ctx),
        "version": version_info()["Client"],
    }


def _host() -> dict[str, Any]:
    from kiln.runtime.binfmt import binfmt_mounted, registered_emulators  # start-up: kiln version

    emulators = [
        {"name": e.name, "interpreter": e.interpreter, "enabled": e.enabled, "flags": e.flags}
        for e in registered_emulators()
    ]
    return {
        "arch": go_arch(),
        "os": "linux",
        "kernel": platform.release(),
        "hostname": platform.node(),
        "cpus": os.cpu_count() or 1,
        "rootless": is_rootless(),
        "ociRuntime": _runtime("runc"),
        "isolation": Isolation.parse(
            os.environ.get("BUILDAH_ISOLATION") or "oci", "$BUILDAH_ISOLATION"
        ).value,
        "binfmtMisc": binfmt_mounted(),
        "emulators": emulators,
    }


def _runtime(name: str) -> dict[str, Any]:
    from kiln.runtime.runc import find_runtime, runtime_version  # start-up: kiln version

    try:
        path = find_runtime(name)
        return {"name": name, "path": path, "version": runtime_version(path)}
    except Unavailable as exc:
        return {"name": name, "path": "", "version": "", "error": str(exc)}


def _store(ctx: Context) -> dict[str, Any]:
    from kiln.snapshot.mount import overlay_works  # start-up: kiln version

    store = ctx.store
    snaps = ctx.snapshots
    driver = snaps.driver
    overlay = driver == "overlay" or overlay_works(os.path.join(snaps.root, "tmp"))
    fs = os.statvfs(store.root)
    blobs_dir = os.path.join(store.root, "blobs")
    return {
        "graphRoot": store.root,
        "graphDriverName": driver,
        "graphStatus": {
            "Backing Filesystem": _filesystem_type(store.root),
            "Overlay Works": overlay,
            "Driver Chosen By": "$KILN_SNAPSHOT_DRIVER"
            if os.environ.get("KILN_SNAPSHOT_DRIVER")
            else "probe",
        },
        "graphRootSize": _disk_usage(store.root),
        "blobsSize": _disk_usage(blobs_dir, apparent=True),
        "graphRootAllocated": fs.f_blocks * fs.f_frsize,
        "graphRootUsed": (fs.f_blocks - fs.f_bfree) * fs.f_frsize,
        "imageStore": {"number": store.image_count()},
        "containerStore": {"number": len(store.list_containers())},
        "buildCache": {"number": store.count_cache()},
        "imageCopyTmpDir": ctx.config.scratch_dir(),
    }


def _registries(ctx: Context) -> dict[str, Any]:
    from kiln.registry import registries_conf  # start-up: kiln version

    path = registries_conf.config_path(ctx.config.registries_conf)
    try:
        conf = registries_conf.load(ctx.config.registries_conf)
    except KilnError as exc:
        return {"configFile": path, "files": [], "error": str(exc)}
    entries = {
        e.prefix: {
            "location": e.location,
            "insecure": e.insecure,
            "blocked": e.blocked,
            "mirrors": [{"location": m.location, "insecure": m.insecure} for m in e.mirrors],
            "mirrorByDigestOnly": e.mirror_by_digest_only,
        }
        for e in conf.registries
    }
    return {
        "configFile": path,
        "files": list(conf.files),
        "search": list(conf.search),
        "shortNameMode": conf.short_name_mode,
        "registries": entries,
        "aliases": len(conf.aliases),
        "authFile": ctx.config.authfile or "",
    }


def _filesystem_type(path: str) -> str:
    """The type of the file system ``path`` is on, from ``/proc/self/mountinfo``."""
    path = os.path.realpath(path)
    best, fstype = -1, ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                head, _, tail = line.partition(" - ")
                fields = head.split()
                if len(fields) < 5 or not tail:
                    continue
                point = fields[4].replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= best:
                    best, fstype = len(point), tail.split()[0]
    except OSError:
        return ""
    return fstype


def _disk_usage(top: str, apparent: bool = False) -> int:
    """Bytes under ``top`` on disk (``du``), or the sum of file sizes with ``apparent``;
    symlinks are not followed and a file that vanishes meanwhile counts nothing."""
    total = 0
    stack = [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        if apparent:
                            continue
                    total += st.st_size if apparent else st.st_blocks * 512
        except OSError:
            continue
    return total


__all__ = [
    "DOCKER_API_VERSION",
    "DOCKER_MIN_API_VERSION",
    "LIBPOD_API_VERSION",
    "LIBPOD_MIN_API_VERSION",
    "built_at",
    "go_arch",
    "kiln_version",
    "system_info",
    "version_info",
]
