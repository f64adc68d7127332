"""``/_ping``, ``/version``, ``/info`` (Docker) and their libpod twins."""

from __future__ import annotations

import functools
import os
import platform
import socket
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kiln.ops.system import LIBPOD_MIN_API_VERSION, built_at, go_arch, kiln_version, system_info

from .params import qbool
from .versions import DOCKER_API_VERSION, DOCKER_MIN_API_VERSION, LIBPOD_API_VERSION
from .wiring import run_op

if TYPE_CHECKING:
    from kiln.ops.context import Context

PING_HEADERS = {
    "Api-Version": DOCKER_API_VERSION,
    "Builder-Version": "1",  # the classic builder protocol: kiln streams JSON, not BuildKit
    "Docker-Experimental": "false",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Libpod-API-Version": LIBPOD_API_VERSION,
    "Libpod-Buildah-Version": "1.28.0",
}


async def ping(request: Request) -> Response:
    body = "" if request.method == "HEAD" else "OK"
    return PlainTextResponse(body, headers=PING_HEADERS)


def version_body() -> dict[str, Any]:
    kv = kiln_version()
    engine = {
        "ApiVersion": DOCKER_API_VERSION,
        "MinAPIVersion": DOCKER_MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": platform.release(),
    }
    details = {**engine, "Experimental": "false", "BuildTime": ""}
    # podman's bindings read the server's API version from this component's "APIVersion"
    # (podman --remote version showed "API Version:" empty)
    libpod = {k: v for k, v in details.items() if k != "ApiVersion"}
    libpod.update(APIVersion=LIBPOD_API_VERSION, MinAPIVersion=LIBPOD_MIN_API_VERSION,
                  BuildTime=build_time())  # fmt: skip
    return {
        "Platform": {"Name": f"kiln {kv}"},
        "Components": [
            {"Name": "Engine", "Version": kv, "Details": details},
            {"Name": "Podman Engine", "Version": LIBPOD_API_VERSION, "Details": libpod},
        ],
        "Version": kv,
        **engine,
        "BuildTime": "",
    }


async def version_route(request: Request) -> Response:
    body = version_body()
    if request.scope.get("kiln.libpod"):
        # podman's bindings parse BuildTime as RFC 3339 ("" showed year 1 as built)
        body.update(Version=LIBPOD_API_VERSION, BuildTime=build_time())
    return JSONResponse(body)


@functools.cache  # one installation's time; read once
def build_time() -> str:
    """When this kiln was built or installed, in RFC 3339 (podman's ``BuildTime``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built_at()))


def _meminfo_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


async def info(request: Request) -> Response:
    def collect(ctx) -> tuple[int, str]:  # images and lists, as `docker images -a` shows them
        return ctx.store.image_count() + ctx.store.index_count(), ctx.store.root

    count, root = await run_op(request, collect)
    body: dict[str, Any] = {
        "ID": "",
        "Containers": 0,
        "ContainersRunning": 0,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": count,
        "Driver": "overlay",
        "DriverStatus": [],
        "DockerRootDir": root,
        "Plugins": {"Volume": [], "Network": [], "Authorization": None, "Log": []},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "OomKillDisable": False,
        "IPv4Forwarding": True,
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0,
        "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "",
        "CgroupDriver": "none",
        "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
        "NEventsListener": 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": platform.system(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _meminfo_total(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {},
            "Mirrors": [],
        },
        "GenericResources": None,
        "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
        "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": kiln_version(),
        "Runtimes": {"runc": {"path": "runc"}},
        "DefaultRuntime": "runc",
        "LiveRestoreEnabled": False,
        "Isolation": "default",
        "InitBinary": "",
        "SecurityOptions": [],
        "Warnings": [],
        # no swarm, and no containerd, runc or init binary of its own to report a commit of
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
    }  # fmt: skip
    return JSONResponse(body)


async def libpod_info(request: Request) -> Response:
    """podman's ``info`` object (``podman --remote info``)."""

    return JSONResponse(libpod_info_shape(await run_op(request, system_info)))


async def libpod_check(request: Request) -> Response:
    """``POST /libpod/system/check`` (podman 5): ``quick``, ``repair``, ``repair_lossy``
    (also removes working containers of damaged images); podman's ``SystemCheckReport``
    keys with kiln's own report beside them."""

    q = request.query_params
    quick, repair, lossy = qbool(q, "quick"), qbool(q, "repair"), qbool(q, "repair_lossy")

    def run(ctx: Context) -> dict[str, Any]:
        from kiln.ops.check import check  # start-up: fsck's modules load with the first check

        return check(ctx, repair=repair or lossy, quick=quick, force=lossy).to_json()

    return JSONResponse(await run_op(request, run))


def libpod_info_shape(data: dict[str, Any]) -> dict[str, Any]:
    """kiln's info -> the types podman's ``define.Info`` decodes (graphStatus is a map of
    strings; the API version is libpod's)."""
    store = dict(data.get("store") or {})
    store["graphStatus"] = {k: str(v) for k, v in (store.get("graphStatus") or {}).items()}
    # podman's counts by state: kiln's working containers never run
    store["containerStore"] = {
        "paused": 0,
        "running": 0,
        "stopped": 0,
        **store.get("containerStore", {}),
    }
    version = dict(data.get("version") or {})
    version.update(APIVersion=LIBPOD_API_VERSION, GoVersion=f"python{platform.python_version()}")
    return {**data, "store": store, "version": version}


routes = [
    Route("/_ping", ping, methods=["GET", "HEAD"]),
    Route("/libpod/_ping", ping, methods=["GET", "HEAD"]),
    Route("/version", version_route, methods=["GET"]),
    Route("/libpod/version", version_route, methods=["GET"]),
    Route("/info", info, methods=["GET"]),
    Route("/libpod/info", libpod_info, methods=["GET"]),
    Route("/libpod/system/check", libpod_check, methods=["POST"]),
]

__all__ = ["PING_HEADERS", "kiln_version", "routes", "version_body"]
