"""``RUN --mount=...`` and ``--secret`` made real: runtime mounts for one RUN.

- ``bind``: a path of the context (default) or of a stage's/image's rootfs (``from=``);
  read-only unless ``rw`` (then a throw-away copy is mounted, as BuildKit discards writes).
- ``cache``: the store's directory for the cache id (``Store.cache_mount_dir``), kept across builds;
  ``sharing=locked`` holds an exclusive lock for the RUN, ``private`` uses a fresh
  directory when another RUN holds it, ``shared`` takes no lock. With ``from=`` (a stage,
  an image or a named context), the cache starts as a copy of ``source`` in that root, and
  is one of its own per id and ``from`` image (BuildKit keys it on both).
- ``tmpfs``: a tmpfs (``size=``).
- ``secret``: the value of a ``--secret id=..,src=..|env=..`` as a file (mode 0400 unless
  ``mode=``) in a private temporary directory, bind-mounted read-only at
  ``/run/secrets/<id>`` (or ``target=``), or as an environment variable (``env=``). The
  runtime removes the mountpoint placeholders after the run, so a secret never reaches a
  layer; its value never reaches the history or a cache key.
- ``ssh``: the agent ``--ssh`` gave for the id (default ``default``), relayed through a
  socket of kiln's own (``kiln.runtime.ssh_agent.forwarded_socket``: ``uid``, ``gid``,
  ``mode`` 0600 unless given) bind-mounted at ``target`` or ``/run/buildkit/ssh_agent.N``
  (N counts the RUN's ssh mounts from 0), as BuildKit; ``MountSet.ssh_auth_sock`` is the
  first one's target. An id no ``--ssh`` names fails the RUN when ``required``, else the
  mount is left out. Only the mount's own fields reach the cache key, never the agent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import field
from typing import TYPE_CHECKING

from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument, NotFound
from kiln.runtime import Mount
from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.build.mounts import Mount as RunMount
    from kiln.store import Store

__all__ = ["MountSet", "Secret", "parse_secrets", "prepared_mounts"]


@dataclass(frozen=True)
class Secret:
    """One --secret: an id and its file or environment variable."""

    id: str
    source: str | None = None  # a file
    env: str | None = None  # an environment variable of the builder

    def value(self) -> bytes:
        if self.env is not None:
            if self.env not in os.environ:
                raise NotFound(f'secret "{self.id}": environment variable {self.env} is not set')
            return os.environ[self.env].encode()
        assert self.source is not None
        try:
            with open(self.source, "rb") as f:
                return f.read()
        except OSError as exc:
            raise NotFound(
                f'secret "{self.id}": cannot read {self.source}: {exc.strerror}'
            ) from None


def parse_secrets(specs: list[str]) -> dict[str, Secret]:
    """``id=x,src=path`` / ``id=x,env=VAR`` / ``id=x,type=env,src=VAR`` -> secrets by id."""
    found: dict[str, Secret] = {}
    for spec in specs:
        fields: dict[str, str] = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            if not sep:
                raise InvalidArgument(f"--secret {spec!r}: use id=NAME,src=PATH or id=NAME,env=VAR")
            fields[key.strip().lower()] = value
        ident = fields.get("id")
        kind = fields.get("type", "file")
        src = fields.get("src") or fields.get("source")
        env = fields.get("env")
        if kind == "env" and src and not env:
            env, src = src, None
        if not ident:
            ident = os.path.basename(src) if src else env
        if not ident or (src is None) == (env is None):
            raise InvalidArgument(f"--secret {spec!r}: use id=NAME,src=PATH or id=NAME,env=VAR")
        if src and not os.path.exists(src):  # a typo is named now, not when a RUN reads it
            raise NotFound(f"--secret id={ident}: {src}: no such file or directory")
        found[ident] = Secret(ident, os.path.abspath(src) if src else None, env)
    return found


@dataclass
class MountSet:
    """The mounts and secret environment of one RUN."""

    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # secret env values (never recorded)
    ssh_auth_sock: str | None = None  # the first ssh mount's target (BuildKit's SSH_AUTH_SOCK)


# (stage or image reference) -> a context manager yielding that rootfs
RootOpener = Callable[[str], contextlib.AbstractContextManager[str]]


@contextlib.contextmanager
def _inside(root: str, rel: str) -> Iterator[str]:
    """``rel`` resolved inside ``root`` by the in-root resolver (symlinks followed as if
    ``root`` were ``/``, as COPY does), named by the path of what was resolved.

    The runtime mounts by path from its own mount namespace (a ``/proc/<pid>/fd`` link of
    kiln's is refused there), so a component swapped for a symlink between this and the
    mount is not caught; the resolved entry is held open until the RUN ends."""
    with SafeRoot.opened(root) as sr:
        try:
            fd = sr.open_path(rel or "/", follow=True)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(
                f"mount source {rel!r} not found: check source= of RUN --mount"
            ) from None
        except OSError as exc:
            raise InvalidArgument(
                f"mount source {rel!r} cannot be resolved in its root: {exc.strerror}"
            ) from None
    try:
        yield os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def prepared_mounts(
    specs: tuple[RunMount, ...],
    *,
    context_dir: str,
    store: Store,
    secrets: dict[str, Secret],
    open_root: RootOpener,
    tmpdir: str | None = None,
    ssh_sockets: dict[str, str] | None = None,
    from_ids: Mapping[str, str] | None = None,
) -> Iterator[MountSet]:
    """The runtime mounts of one RUN; everything temporary goes away afterwards.
    ``ssh_sockets``: the build's agents (``--ssh`` id -> socket on the host).
    ``from_ids``: the image ID each ``from=`` names (what a seeded cache is keyed on)."""
    result = MountSet()
    if not specs:  # most RUNs: no directory to make and remove (an rmdir can cost ms)
        yield result
        return
    import shutil  # start-up: a RUN without --mount (every build imports this module)
    import tempfile

    ssh_index = 0
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="kiln-run-", dir=tmpdir))
        os.chmod(tmp, 0o700)
        for index, spec in enumerate(specs):
            target = spec.target or ""
            if spec.type == "bind":
                root = stack.enter_context(open_root(spec.from_)) if spec.from_ else context_dir
                source = stack.enter_context(_inside(root, spec.source or ""))
                if not spec.readonly:
                    copy = os.path.join(tmp, f"bind-{index}")
                    if os.path.isdir(source):
                        shutil.copytree(source, copy, symlinks=True)
                    else:
                        shutil.copy2(source, copy)
                    source = copy
                mode = "ro" if spec.readonly else "rw"
                result.mounts.append(Mount("bind", source, target, (mode, "rbind")))
            elif spec.type == "cache":
                seed = _seeder(spec, open_root) if spec.from_ else None
                ident = spec.id or spec.target or "cache"
                if spec.from_:
                    base = (from_ids or {}).get(spec.from_, spec.from_)
                    ident = f"{ident}\0from={base}\0source={spec.source or '/'}"
                source = stack.enter_context(_cache_dir(store, spec, tmp, index, ident, seed))
                mode = "ro" if spec.readonly else "rw"
                result.mounts.append(Mount("bind", source, target, (mode, "rbind")))
            elif spec.type == "tmpfs":
                opts = (f"size={spec.size}",) if spec.size else ()
                result.mounts.append(Mount("tmpfs", "tmpfs", target, opts))
            elif spec.type == "secret":
                _secret(spec, secrets, tmp, index, result)
            else:
                target = spec.target or f"/run/buildkit/ssh_agent.{ssh_index}"
                ssh_index += 1
                if result.ssh_auth_sock is None:
                    result.ssh_auth_sock = target
                upstream = (ssh_sockets or {}).get(spec.id or "default")
                if upstream is None:
                    if spec.required:
                        raise NotFound(
                            f'ssh agent "{spec.id}" is required by RUN --mount=type=ssh: '
                            f"build with --ssh {spec.id}[=SOCKET|KEY]"
                        )
                    continue
                # start-up: the ssh relay only for RUN --mount=type=ssh
                from kiln.runtime.ssh_agent import forwarded_socket

                path = stack.enter_context(forwarded_socket(
                    upstream, os.path.join(tmp, f"ssh-{index}"), uid=spec.uid or 0,
                    gid=spec.gid or 0, mode=spec.mode if spec.mode is not None else 0o600,
                ))  # fmt: skip
                result.mounts.append(Mount("bind", path, target, ("ro", "rbind")))
        yield result


def _secret(spec: RunMount, secrets: dict[str, Secret], tmp: str, index: int, out: MountSet):
    secret = secrets.get(spec.id or "")
    if secret is None:
        if spec.required:
            raise NotFound(f'secret "{spec.id}" is required: pass --secret id={spec.id},src=...')
        return
    value = secret.value()
    if spec.env:
        out.env[spec.env] = value.decode("utf-8", "surrogateescape")
        if not spec.target:
            return
    path = os.path.join(tmp, f"secret-{index}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    os.chown(path, spec.uid or 0, spec.gid or 0)
    os.chmod(path, spec.mode if spec.mode is not None else 0o400)
    target = spec.target or f"/run/secrets/{spec.id}"
    out.mounts.append(Mount("bind", path, target, ("ro", "rbind")))


def _seeder(spec: RunMount, open_root: RootOpener) -> Callable[[str], None]:
    """Fills a new ``from=`` cache with a copy of ``source`` in that stage's or image's root
    (resolved in-root), owners, modes and times kept."""

    def seed(new_dir: str) -> None:
        # start-up: the layer merge only for a cache mount's from=
        from kiln.snapshot.copytree import merge_layers

        assert spec.from_
        with open_root(spec.from_) as root, _inside(root, spec.source or "") as found:
            if not os.path.isdir(found):
                raise InvalidArgument(
                    f"mount source {spec.source!r} of {spec.from_} is not a directory: a "
                    "cache mount's from= needs a directory to start from"
                )
            merge_layers([found], new_dir)

    return seed


@contextlib.contextmanager
def _cache_dir(
    store: Store,
    spec: RunMount,
    tmp: str,
    index: int,
    ident: str,
    seed: Callable[[str], None] | None = None,
) -> Iterator[str]:
    mode = spec.mode if spec.mode is not None else 0o755
    uid, gid = spec.uid or 0, spec.gid or 0

    def directory() -> str:
        """Asked for with the cache's lock held (a prune keeps away from it), so a prune
        that came between an earlier lookup and the lock cannot leave a missing one."""
        if seed is None:
            return store.cache_mount_dir(ident, mode=mode, uid=uid, gid=gid)
        # one seeding at a time, on a lock of its own (the cache's is held by its users)
        with store.cache_mount_lock(ident + "\0seeding"):
            return store.cache_mount_dir(ident, mode=mode, uid=uid, gid=gid, seed=seed)

    if spec.sharing == "shared":
        with store.cache_mount_lock(ident, shared=True):  # keeps prune away
            yield directory()
        return
    with store.cache_mount_lock(ident, wait=spec.sharing == "locked") as held:
        if held:
            yield directory()
            return
        private = os.path.join(tmp, f"cache-{index}")
        os.mkdir(private, mode)
        os.chown(private, spec.uid or 0, spec.gid or 0)
        if seed is not None:
            seed(private)
        yield private
