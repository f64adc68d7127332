"""RUN in a working container: ``Builder.run`` and ``Builder.run_options`` are these.

``run_options`` lays the container's config (env, user, working dir) and ``kiln from``'s RUN
flags under the flags given now; ``run_in`` turns ``type=cache`` mounts into binds of
persistent directories (held shared so ``builder prune`` keeps away), runs the process over
the mounted rootfs (``kiln.runtime.run``) and removes the placeholder directories the runtime
copied up for mount points and left unchanged. Reads the Builder (through the ``Builder``
protocol below: ``builder.py`` imports this module), never changes it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Protocol

from kiln.errors import InvalidArgument
from kiln.oci.platform import normalize_arch
from kiln.runtime import RunOptions, RunSettings, parse_volume
from kiln.runtime import run as run_process
from kiln.runtime.mountpoints import ETC_FILES, SYSTEM_DIRS, etc_files
from kiln.runtime.options import check_namespace_paths
from kiln.store import Store

from . import copied_up
from .config_edit import ConfigEditor
from .state import ContainerState

#: (directories, files) a rootfs shows from a layer under the image's where no layer has
#: them (``Builder.mounted``)
Stubs = tuple[Sequence[str], Sequence[str]]
#: a run's mountpoints: /proc, /dev, /sys and the /etc files kiln binds
RUN_STUBS: Stubs = (SYSTEM_DIRS, ETC_FILES)


class Builder(Protocol):
    """What a run reads of ``kiln.container.builder.Builder`` (which imports this module)."""

    store: Store
    state: ContainerState
    config: ConfigEditor

    @property
    def mount_target(self) -> str: ...

    def is_copy_snapshot(self) -> bool: ...

    def upper_dir(self) -> str: ...

    def mounted(self, stubs: Stubs | None = None) -> AbstractContextManager[str]: ...


def run_options(b: Builder, args: Sequence[str], opts: Any = None, **overrides: Any) -> Any:
    """The ``RunOptions`` for ``args``: the config's env/user/workdir under ``opts``.

    ``opts`` (a ``RunOptions``) carries the flags; its ``env`` adds to the config's, a
    non-empty ``user`` and a ``cwd`` other than "/" win over the config. ``overrides``
    (``user=``, ``cwd=``, ``env=``...) replace fields outright.
    """
    base = opts if opts is not None else RunOptions(args=list(args))
    if b.state.run:  # kiln from's RUN flags, under the ones given now
        kept = base.settings().over(RunSettings.from_json(b.state.run))
        base = replace(base, **{k: getattr(kept, k) for k in kept.to_json()})
    if b.state.volumes:  # kiln from's volumes, under the mounts given now
        taken = {_place(m.destination) for m in base.mounts}
        volumes = [parse_volume(v) for v in b.state.volumes]
        volumes = [m for m in volumes if _place(m.destination) not in taken]
        base = replace(base, mounts=[*volumes, *base.mounts])
    runtime = b.config.runtime
    env = dict(runtime.env_dict())
    for item in list(base.env) + list(overrides.pop("env", [])):
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    user = base.user or runtime.user
    cwd = base.cwd if base.cwd not in ("", "/") else (runtime.working_dir or "/")
    fields: dict[str, Any] = {
        "args": list(args),
        "env": [f"{k}={v}" for k, v in env.items()],
        "user": user,
        "cwd": cwd,
    }
    fields.update(overrides)
    return replace(base, **fields)


def check_run_flags(run: RunSettings | None, volumes: Sequence[str]) -> None:
    """Refuse a ``kiln from --volume``, ``--device`` or seccomp profile that no run could
    use: a bad spec, a host path that is not there, a device that is no device or a profile
    that cannot be read (as buildah does when the container is made)."""
    if run is not None:
        check_namespace_paths(run)
    if run is not None and run.devices:
        from kiln.runtime.devices import host_devices  # start-up: only --device needs it

        host_devices(run.devices)
    if run is not None and run.seccomp not in ("default", "unconfined"):
        from kiln.runtime.seccomp import load_profile  # start-up: only a profile's path

        load_profile(run.seccomp)
    for spec in volumes:
        source = parse_volume(spec).source
        if not os.path.exists(source):
            raise InvalidArgument(
                f"--volume {spec!r}: the host path {source} does not exist: create it or fix "
                "the path"
            )


def _place(destination: str) -> str:
    """Where a mount lands, for telling two apart (``/a/../b/`` is ``/b``; the runtime
    resolves each in the container, inside its root)."""
    return posixpath.normpath("/" + destination)


def run_in(b: Builder, args: Sequence[str], opts: Any = None, **overrides: Any) -> int:
    """Run ``args`` in the container (runc or chroot); returns the exit code."""
    if not args:
        raise InvalidArgument("no command given to run: pass the command and its arguments")
    _emulate_if_foreign(b)
    options = run_options(b, args, opts, **overrides)
    # start-up: kiln.snapshot costs ~0.03 s (see kiln.container.builder's docstring)
    from kiln.snapshot.mount import is_mountpoint

    with contextlib.ExitStack() as held:
        for m in options.mounts:  # held shared, before the directory is looked up (or made
            if m.type == "cache":  # again): keeps `builder prune` away from it
                held.enter_context(b.store.cache_mount_lock(_cache_id(m), shared=True))
        options = replace(options, mounts=[_cache_mount(b, m) for m in options.mounts])
        tidy = not is_mountpoint(b.mount_target) and not b.is_copy_snapshot()
        dests = [m.destination for m in options.mounts]
        candidates = copied_up.placeholder_parents(dests) if tidy else []
        upper = b.upper_dir()
        new = [p for p in candidates if not copied_up.exists_in(upper, p)]
        # the mountpoints come from a layer under the image's: none is made in (and
        # removed from) the upper, /etc is not copied up for /etc/hosts
        stubs = RUN_STUBS if not options.no_hosts else (SYSTEM_DIRS, etc_files(options))
        rootfs = held.enter_context(b.mounted(stubs))
        before = copied_up.below(rootfs, new)  # the merged view: no walk of the chain
        code = run_process(options, rootfs)
    if new:
        copied_up.prune_unchanged(upper, before)
    return code


def _emulate_if_foreign(b: Builder) -> None:
    """A container of another architecture runs under QEMU: the binfmt_misc handler
    is registered if need be (``Unavailable`` says how to get one); native: nothing."""
    # start-up: only RUN needs the emulator check
    from kiln.runtime.binfmt import ensure_emulator, needs_emulation

    image = b.config.image
    arch = normalize_arch(image.architecture or "", image.variant or "")[0]
    if arch and needs_emulation(arch):
        ensure_emulator(arch)


def _cache_mount(b: Builder, m: Any) -> Any:
    """``type=cache`` -> a bind of a persistent directory kept per cache ``id``."""
    if m.type != "cache":
        return m

    opts = dict(o.partition("=")[::2] for o in m.options if "=" in o)
    if "from" in opts:
        raise InvalidArgument("--mount type=cache,from=... is not supported by kiln run")
    cache_id = _cache_id(m)
    try:
        mode, uid, gid = (int(opts.get("mode", "755"), 8), int(opts.get("uid", "0")),
                          int(opts.get("gid", "0")))  # fmt: skip
    except ValueError:
        raise InvalidArgument(
            f"--mount type=cache: mode must be octal and uid/gid numbers: {m.options}"
        ) from None
    path = b.store.cache_mount_dir(cache_id, mode=mode, uid=uid, gid=gid)
    flags = tuple(o for o in m.options if "=" not in o and o in ("ro", "rw"))
    return replace(m, type="bind", source=path, options=(*flags, "rbind"))


def _cache_id(m: Any) -> str:
    """The id of a ``type=cache`` mount: its ``id=`` option, else its destination."""
    opts = dict(o.partition("=")[::2] for o in m.options if "=" in o)
    return opts.get("id") or m.destination
