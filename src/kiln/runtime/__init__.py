"""Run one process in a prepared rootfs: OCI runtime spec, runc invocation, chroot isolation, mounts. The only package that spawns container processes. Must not import store, image or above."""

from __future__ import annotations

from dataclasses import replace

from .options import (
    Mount,
    RunOptions,
    RunSettings,
    parse_memory,
    parse_mount,
    parse_ulimit,
    parse_volume,
)
from .users import ResolvedUser, resolve_user


def run(opts: RunOptions, rootfs: str) -> int:
    """Run ``opts.args`` in ``rootfs`` with ``opts.isolation``; returns the exit code.

    A command that cannot be executed (missing: 127, not executable: 126) raises
    ``ProcessFailed`` with that exit code and one message, before anything runs. A standard
    stream without a descriptor (``io.BytesIO``) is copied through a pipe."""
    opts.validate()
    if opts.devices:  # those outside /dev are binds (see kiln.runtime.devices)
        from .devices import device_mounts, host_devices  # start-up: only --device needs it

        opts = replace(opts, mounts=[*opts.mounts, *device_mounts(host_devices(opts.devices))])
    # start-up: `import kiln.runtime` (for RunOptions and the flag parsers) is on the path
    # of every build and every verb taking run flags; what runs a process comes with a run
    from .exec_check import check_command

    check_command(opts, rootfs)
    if opts.streams_without_descriptor():
        from .stream_bridge import bridged  # start-up: a library caller's in-memory streams

        with bridged(opts) as piped:
            return _run_isolated(piped, rootfs)
    return _run_isolated(opts, rootfs)


def _run_isolated(opts: RunOptions, rootfs: str) -> int:
    if opts.isolation == "chroot":
        from .chroot import run_chroot  # start-up: chroot isolation only

        return run_chroot(opts, rootfs)
    from .runc import run_oci  # start-up: see run's

    return run_oci(opts, rootfs)


__all__ = [
    "Mount",
    "ResolvedUser",
    "RunOptions",
    "RunSettings",
    "parse_memory",
    "parse_mount",
    "parse_ulimit",
    "parse_volume",
    "resolve_user",
    "run",
]
