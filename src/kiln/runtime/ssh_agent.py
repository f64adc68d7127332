"""SSH agents for ``--ssh`` and ``RUN --mount=type=ssh``, as BuildKit and buildah forward them.

``--ssh default|ID[=SOCKET|KEY[,KEY...]]`` names an agent per id:

- no path: the agent of ``$SSH_AUTH_SOCK``;
- one path that is a socket (a symlink to one is followed, as ssh does): that agent;
- key files: an ``ssh-agent`` of kiln's own, holding those keys (loaded with ``ssh-add``;
  a key that needs a passphrase is refused, never prompted for), for the build only —
  :class:`SshAgents` kills it by its PID when the build ends (and the kernel does if kiln
  dies first).

A RUN never sees a host path: :func:`forwarded_socket` listens on a socket of kiln's own in
the RUN's private temporary directory (owned ``uid:gid``, mode ``mode``, as the mount asks)
and relays each connection to the agent; that socket is bind-mounted at the mount's target
for the RUN only. The host's socket is never chmod'ed, chown'ed or mounted.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kiln.errors import InvalidArgument, NotFound, Unavailable
from kiln.util.lazy_dataclass import dataclass

from . import linux

if TYPE_CHECKING:
    import socket

__all__ = ["SshAgents", "SshSource", "forwarded_socket", "parse_ssh_specs"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_START_TIMEOUT = 10.0
_ADD_TIMEOUT = 30.0
_RELAY_CHUNK = 1 << 16


@dataclass(frozen=True)
class SshSource:
    """One --ssh: an id and its agent sockets or keys."""

    id: str
    paths: tuple[str, ...] = ()  # () -> $SSH_AUTH_SOCK


def parse_ssh_specs(specs: list[str]) -> dict[str, SshSource]:
    """``default``, ``ID``, ``ID=SOCKET``, ``ID=KEY[,KEY...]`` -> sources by id."""
    found: dict[str, SshSource] = {}
    for spec in specs:
        ident, sep, rest = spec.partition("=")
        ident = ident.strip()
        if not _ID.match(ident):
            raise InvalidArgument(
                f"--ssh {spec!r}: the id must be letters, digits, '.', '_' or '-' "
                "(use default or ID=SOCKET|KEY[,KEY])"
            )
        paths = tuple(os.path.abspath(p) for p in rest.split(",") if p) if sep else ()
        if sep and not paths:
            raise InvalidArgument(f"--ssh {spec!r}: give a socket or key file after '='")
        if ident in found:
            raise InvalidArgument(f"--ssh: id {ident!r} is given twice")
        found[ident] = SshSource(ident, paths)
    return found


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class SshAgents:
    """The agents of one build: ``with SshAgents(sources) as agents: agents.sockets``
    (id -> the agent's socket on the host)."""

    def __init__(self, sources: dict[str, SshSource], tmpdir: str | None = None):
        self.sources = sources
        self.tmpdir = tmpdir
        self.sockets: dict[str, str] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._dir: str | None = None

    def __enter__(self) -> SshAgents:
        try:
            for source in self.sources.values():
                self.sockets[source.id] = self._socket_of(source)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _socket_of(self, source: SshSource) -> str:
        if not source.paths:
            sock = os.environ.get("SSH_AUTH_SOCK", "")
            if not sock:
                raise InvalidArgument(
                    f"--ssh {source.id}: SSH_AUTH_SOCK is not set; start an agent or "
                    f"give a socket or key files ({source.id}=PATH)"
                )
            if not _is_socket(sock):
                raise NotFound(f"--ssh {source.id}: SSH_AUTH_SOCK ({sock}) is not a socket")
            return sock
        if len(source.paths) == 1 and _is_socket(source.paths[0]):
            return source.paths[0]
        for path in source.paths:
            if _is_socket(path):
                raise InvalidArgument(
                    f"--ssh {source.id}: {path} is a socket; a socket is given alone, "
                    "key files may be several"
                )
            if not os.path.isfile(path):
                raise NotFound(f"--ssh {source.id}: {path} is not a socket or a key file")
        return self._start_agent(source)

    def _start_agent(self, source: SshSource) -> str:
        if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
            raise Unavailable(
                f"--ssh {source.id}: key files need ssh-agent and ssh-add "
                "(Debian package openssh-client)"
            )
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="kiln-ssh-", dir=self.tmpdir)
        sock = os.path.join(self._dir, f"agent.{len(self._procs)}")
        if len(sock.encode()) > 100:  # sun_path holds 108 bytes
            raise InvalidArgument(f"--ssh: temporary directory path too long for a socket: {sock}")
        log = os.path.join(self._dir, f"agent.{len(self._procs)}.log")
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                ["ssh-agent", "-D", "-a", sock],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=_agent_env(), close_fds=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        self._procs.append(proc)
        deadline = time.monotonic() + _START_TIMEOUT
        # the agent binds its socket before it listens: a connect in between is refused
        while not _accepts(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = _last_line(proc, log)
                raise Unavailable(f"--ssh {source.id}: ssh-agent did not start: {why}")
            time.sleep(0.02)
        keys = self._private_copies(source)
        try:
            added = subprocess.run(
                ["ssh-add", "-q", *keys],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=_ADD_TIMEOUT,
                env={**_agent_env(), "SSH_AUTH_SOCK": sock}, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise Unavailable(f"--ssh {source.id}: ssh-add did not answer in time") from None
        if added.returncode != 0:
            why = added.stderr.decode(errors="replace").strip()
            for copy, path in zip(keys, source.paths, strict=True):
                why = why.replace(copy, path)
            if "passphrase" in why:
                raise InvalidArgument(
                    f"--ssh {source.id}: a key needs a passphrase, which kiln does not ask "
                    f"for: add it to your agent (ssh-add) and pass --ssh {source.id}"
                )
            lines = [line for line in why.splitlines() if not line.startswith("@")]
            raise InvalidArgument(
                f"--ssh {source.id}: cannot load {', '.join(source.paths)}: "
                f"{lines[0] if lines else f'ssh-add exited {added.returncode}'}"
            )
        return sock

    def _private_copies(self, source: SshSource) -> list[str]:
        """The key files copied (mode 0600) into kiln's private directory: ssh-add refuses
        a key others can read, and a key file may belong to another user; BuildKit reads
        the key whatever its mode."""
        assert self._dir is not None
        out = []
        for n, path in enumerate(source.paths):
            copy = os.path.join(self._dir, f"key.{len(self._procs)}.{n}")
            try:
                with open(path, "rb") as src:
                    data = src.read(1 << 20)
            except OSError as exc:
                raise NotFound(f"--ssh {source.id}: cannot read {path}: {exc.strerror}") from None
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as dst:
                dst.write(data)
            out.append(copy)
        return out

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._procs.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _agent_env() -> dict[str, str]:
    """ssh-agent/ssh-add without a way to ask for a passphrase."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["SSH_ASKPASS_REQUIRE"] = "never"
    return env


def _accepts(path: str) -> bool:
    """Whether a server listens on the socket ``path`` (a connection is accepted)."""
    import socket  # start-up: only a build with an ssh mount needs it

    if not _is_socket(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.settimeout(5)
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _die_with_parent() -> None:
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGTERM)


def _last_line(proc: subprocess.Popen[bytes], log: str) -> str:
    if proc.poll() is None:
        return f"no socket after {_START_TIMEOUT:.0f}s"
    with open(log, "rb") as f:
        lines = f.read(65536).decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


@contextlib.contextmanager
def forwarded_socket(upstream: str, path: str, *, uid: int, gid: int, mode: int) -> Iterator[str]:
    """Listen on ``path`` (made here, ``uid:gid``, ``mode``) and relay every connection to
    the agent at ``upstream`` until the block ends; yields ``path``."""
    import socket  # start-up: ~2 ms of CPU that only a build with an ssh mount needs

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # through the directory's fd: a long temporary directory does not overflow sun_path
        listener.bind(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
        os.chown(os.path.basename(path), uid, gid, dir_fd=dfd, follow_symlinks=False)
        os.chmod(f"/proc/self/fd/{dfd}/{os.path.basename(path)}", mode)
    except BaseException:
        listener.close()
        raise
    finally:
        os.close(dfd)
    listener.listen(16)
    relay = _Relay(listener, upstream)
    thread = threading.Thread(target=relay.serve, name="kiln-ssh-relay", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        relay.stop()
        thread.join(timeout=10)


class _Relay:
    """One thread: accepts on the listener, pairs each client with a new upstream
    connection, copies bytes both ways; ``stop`` closes everything."""

    def __init__(self, listener: socket.socket, upstream: str):
        self.listener = listener
        self.upstream = upstream
        self.sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.peers: dict[socket.socket, socket.socket] = {}

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def serve(self) -> None:
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in self.sel.select():
                    if key.fileobj == self._wake_r:
                        return
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        # every other key is a client socket registered by _accept
                        self._pump(key.fileobj)  # type: ignore[arg-type]
        finally:
            for conn in list(self.peers):
                conn.close()
            self.sel.close()
            self.listener.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _accept(self) -> None:
        import socket  # already imported by forwarded_socket

        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            agent.settimeout(10)
            agent.connect(self.upstream)
        except OSError:
            agent.close()
            client.close()
            return
        client.settimeout(10)
        self.peers[client], self.peers[agent] = agent, client
        self.sel.register(client, selectors.EVENT_READ)
        self.sel.register(agent, selectors.EVENT_READ)

    def _pump(self, conn: socket.socket) -> None:
        peer = self.peers.get(conn)
        if peer is None:
            return
        try:
            data = conn.recv(_RELAY_CHUNK)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for end in (conn, peer):  # one side closed or failed: close the pair
            self.peers.pop(end, None)
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(end)
            end.close()
