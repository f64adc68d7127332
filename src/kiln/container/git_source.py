"""Git repositories as sources: ``ADD <git URL>`` and git build contexts.

A source is a git repository as BuildKit reads one: ``git@host:path``, ``git://``,
``ssh://``, or an http(s) URL whose path ends in ``.git`` or that carries a fragment;
``#ref`` names a branch, tag or commit, ``#ref:subdir`` a directory of the checkout.

The clone is the system ``git`` in a temporary directory below the caller's (kiln's scratch
directory, under a ``kiln-`` name the leftover sweep knows), removed whatever happens:
``git init`` + ``fetch --depth 1`` of the ref (a commit that cannot be fetched by itself,
an abbreviated SHA, falls back to a full fetch), a detached checkout, submodules
recursively. git runs bounded in time (``$KILN_GIT_TIMEOUT``, 600 s for the whole clone),
in a session of its own (killed as a group), without a terminal to prompt on, with the
system config off and settings that keep code from the repository from running: no hooks
(``core.hooksPath=/dev/null``, an empty template), no fsmonitor, ``protocol.file.allow=user``
(a submodule cannot reach into the local filesystem) and no ``ext::`` transport. A ref
starting with ``-`` and a subdir leaving the checkout (``..``, absolute, or a symlink
pointing out) are refused. Messages never show a ``user:password@``.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

from kiln.archive.safe_root import SafeRoot
from kiln.errors import InvalidArgument, NotFound, Unauthorized, Unavailable
from kiln.util.cancel import cancelled_error, when_cancelled
from kiln.util.lazy_dataclass import dataclass
from kiln.util.lazy_pattern import lazy_pattern
from kiln.util.redact import redact

__all__ = [
    "Checkout",
    "GitSource",
    "git_checkout",
    "is_git_source",
    "parse_git_source",
    "resolve_commit",
]

DEFAULT_TIMEOUT = 600.0
_SHA = lazy_pattern(r"^[0-9a-fA-F]{7,64}$")
_FULL_SHA = lazy_pattern(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")
# settings given on every git command line: they win over the user's global config
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.file.allow=user",
    "protocol.ext.allow=never",
    "submodule.recurse=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
    "core.autocrlf=false",
    "core.symlinks=true",
    "http.lowSpeedLimit=1",
    "http.lowSpeedTime=120",
)
_GIT_ERRORS = (NotFound, Unavailable, InvalidArgument, Unauthorized)
# where a repository is: from the caller's environment these would redirect git
_DROPPED_ENV = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_PROTOCOL_FROM_USER",
    "GIT_ALLOW_PROTOCOL", "GIT_TEMPLATE_DIR",
)  # fmt: skip


@dataclass(frozen=True)
class GitSource:
    """A git URL split into the repository, ref and subdirectory."""

    url: str  # what git fetches (no fragment)
    ref: str = ""  # "" is the remote's default branch (HEAD)
    subdir: str = ""  # "" is the whole checkout

    def __str__(self) -> str:
        text = self.url + (f"#{self.ref}" if self.ref or self.subdir else "")
        return redact(text + (f":{self.subdir}" if self.subdir else ""))


@dataclass(frozen=True)
class Checkout:
    """A checked-out git source and its commit."""

    path: str  # the checkout, or its subdir
    commit: str  # the commit checked out (hex)


def is_git_source(src: str, *, local: bool = False) -> bool:
    """A git repository as BuildKit and docker read a source: ``git@...``, ``git://...``,
    ``ssh://...``, or an http(s) URL whose path ends in ``.git`` or that names a ``#ref``.
    ``local``: a ``file://`` URL of that form too (a build context the user names; never a
    Dockerfile's ADD, which must not read the builder's filesystem)."""
    if src.startswith(("git@", "git://", "ssh://")):
        return True
    schemes = ("http://", "https://", "file://") if local else ("http://", "https://")
    if not src.startswith(schemes):
        return False
    url, _, fragment = src.partition("#")
    return bool(fragment) or url.split("?", 1)[0].rstrip("/").endswith(".git")


def parse_git_source(src: str) -> GitSource:
    """``URL[#ref[:subdir]]`` checked: a ref that git could read as an option, or a subdir
    that leaves the checkout, is refused."""
    url, _, fragment = src.partition("#")
    ref, _, subdir = fragment.partition(":")
    shown = redact(src)
    if not url or url.startswith("-"):
        raise InvalidArgument(f"git source {shown}: the URL is empty or starts with '-'")
    if ref.startswith("-"):
        raise InvalidArgument(
            f"git source {shown}: the ref {ref!r} starts with '-'; a branch, tag or commit "
            "never does"
        )
    if any(c.isspace() or ord(c) < 32 or c in "~^?*[\\" for c in ref) or ".." in ref:
        raise InvalidArgument(f"git source {shown}: {ref!r} is not a valid git ref")
    if subdir:
        if subdir.startswith("/") or ".." in subdir.split("/") or "\0" in subdir:
            raise InvalidArgument(
                f"git source {shown}: the subdirectory {subdir!r} must be a relative path "
                "inside the repository (no '..', not absolute)"
            )
        subdir = posixpath.normpath(subdir)
        subdir = "" if subdir == "." else subdir
    return GitSource(url, ref, subdir)


def resolve_commit(src: GitSource, *, what: str, timeout: float | None = None) -> str | None:
    """The commit ``src.ref`` names on the remote now (``git ls-remote``), without cloning;
    None when the remote lists no such ref (an abbreviated SHA: clone to know it)."""
    if _FULL_SHA().match(src.ref):
        return src.ref.lower()
    deadline = _deadline(timeout)
    pattern = src.ref or "HEAD"
    patterns = [pattern, pattern + "^{}"] if src.ref else [pattern]  # and the tag's commit
    out = _git(["ls-remote", "--", src.url, *patterns], None, what, deadline)
    found = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        found[name] = sha
    wanted = (
        [pattern]
        if not src.ref
        else [
            src.ref,
            f"refs/{src.ref}",
            f"refs/tags/{src.ref}",
            f"refs/heads/{src.ref}",
        ]
    )  # fmt: skip  (git's own order of reading a short ref name)
    for name in wanted:
        if name in found:
            return found.get(name + "^{}", found[name])  # an annotated tag: its commit
    return None


@contextlib.contextmanager
def git_checkout(
    src: GitSource,
    parent: str,
    *,
    what: str,
    keep_git_dir: bool = False,
    commit: str | None = None,
    timeout: float | None = None,
) -> Iterator[Checkout]:
    """Clone ``src`` into a new directory under ``parent`` and yield its checkout (or the
    subdir of it); the directory is removed afterwards, on failure too. ``commit``: the
    commit resolved before (the cache key's): checked out, and the ref must still name it."""
    deadline = _deadline(timeout)
    tmp = tempfile.mkdtemp(prefix="git-", dir=parent)
    try:
        repo = os.path.join(tmp, "checkout")
        head = _clone(src, repo, what, deadline, commit)
        if os.path.exists(os.path.join(repo, ".gitmodules")):
            _submodules(repo, what, deadline)
        if keep_git_dir:
            # the kept remote must not carry the credentials the URL was given with
            _git(["remote", "set-url", "origin", _without_userinfo(src.url)], repo, what, deadline)
        else:
            _drop_git_dirs(repo, what, deadline)
        with _subdir(src, repo) as path:
            yield Checkout(path, head)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _clone(src: GitSource, repo: str, what: str, deadline: float, commit: str | None) -> str:
    """Fetch and check out ``commit`` (when the cache key pinned one) or ``src.ref``: one
    commit deep where the server allows, else its whole history (an abbreviated SHA, or a
    commit a server will not send by its SHA); returns the commit checked out."""
    _git(["init", "-q", "--template=", repo], None, what, deadline)
    _git(["remote", "add", "origin", src.url], repo, what, deadline)
    fetch = ["fetch", "-q", "--no-tags", "--recurse-submodules=no"]
    failed: Exception | None = None
    for target in dict.fromkeys([*([commit] if commit else []), src.ref or "HEAD"]):
        try:
            _git([*fetch, "--depth", "1", "origin", target], repo, what, deadline)
        except _GIT_ERRORS as exc:
            failed = failed or exc
            continue
        head = _verify("FETCH_HEAD", repo, what, deadline, src)
        if commit is None or head == commit:
            _git(["checkout", "-q", "--detach", head], repo, what, deadline)
            return head
    wanted = commit or src.ref
    if not _SHA().match(wanted or ""):
        assert failed is not None
        raise failed
    _git([*fetch, "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
         repo, what, deadline)  # fmt: skip
    head = _verify(wanted, repo, what, deadline, src)
    _git(["checkout", "-q", "--detach", head], repo, what, deadline)
    return head


def _verify(name: str, repo: str, what: str, deadline: float, src: GitSource) -> str:
    try:
        return _git(["rev-parse", "--verify", "-q", "--end-of-options", name + "^{commit}"],
                    repo, what, deadline).strip()  # fmt: skip
    except _GIT_ERRORS:
        raise NotFound(f"{redact(what)}: {src}: no branch, tag or commit {name!r}") from None


def _submodules(repo: str, what: str, deadline: float) -> None:
    update = ["submodule", "--quiet", "update", "--init", "--recursive"]
    try:
        _git([*update, "--depth", "1"], repo, what, deadline)
    except (NotFound, Unavailable):
        _git(update, repo, what, deadline)  # a submodule commit not at a branch's tip


def _drop_git_dirs(repo: str, what: str, deadline: float) -> None:
    """The checkout without git's metadata: ``.git`` and the ``.git`` file of each
    submodule (which would point into the removed directory)."""
    if os.path.exists(os.path.join(repo, ".gitmodules")):
        listed = _git(["submodule", "--quiet", "foreach", "--recursive",
                       "printf '%s\\0' \"$displaypath\""], repo, what, deadline)  # fmt: skip
        for path in filter(None, listed.split("\0")):
            with SafeRoot.opened(repo) as root:
                root.remove(posixpath.join(path, ".git"))
    shutil.rmtree(os.path.join(repo, ".git"))


@contextlib.contextmanager
def _subdir(src: GitSource, repo: str) -> Iterator[str]:
    """The subdir resolved in the checkout by the kernel, refusing a symlink that leads out
    of it; the directory is held open (and named by its fd) while it is used."""
    if not src.subdir:
        yield repo
        return
    with SafeRoot.opened(repo) as root:
        try:
            fd = root.open_path(src.subdir, follow=True, beneath=True)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"git source {src}: no directory {src.subdir!r} in it") from None
        except OSError as exc:
            raise InvalidArgument(
                f"git source {src}: the subdirectory {src.subdir!r} leads out of the "
                f"repository ({exc.strerror})"
            ) from None
    try:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            raise InvalidArgument(f"git source {src}: {src.subdir!r} is not a directory")
        yield os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _without_userinfo(url: str) -> str:
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)


# -- running git ---------------------------------------------------------------------------------


def _deadline(timeout: float | None) -> float:
    if timeout is None:
        value = os.environ.get("KILN_GIT_TIMEOUT", "")
        try:
            timeout = float(value) if value else DEFAULT_TIMEOUT
        except ValueError:
            timeout = DEFAULT_TIMEOUT
    return time.monotonic() + timeout


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="C")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _git(args: list[str], cwd: str | None, what: str, deadline: float) -> str:
    """Run git (umask 022, so a checkout's modes are 0644/0755 as in an image); its output,
    or a kiln error with git's own (redacted) message."""
    what = redact(what)
    git = shutil.which("git")
    if git is None:
        raise Unavailable(f"{what}: git is not installed (install the git package)")
    config = [a for kv in _SAFE_CONFIG for a in ("-c", kv)]
    cmd = ["/bin/sh", "-c", 'umask 022 && exec "$@"', "git", git, *config, *args]
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Unavailable(f"{what}: git did not finish in time ($KILN_GIT_TIMEOUT)")
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip  (no terminal to prompt on)
    try:
        # a Ctrl-C reaching a build's stage thread, an API client gone: git is killed
        with when_cancelled(lambda: _signal_group(proc)) as flag:
            out, err = proc.communicate(timeout=remaining)
        if flag is not None and flag.is_set():
            raise cancelled_error(flag)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise Unavailable(
            f"{what}: git did not finish within the time allowed ($KILN_GIT_TIMEOUT)"
        ) from None
    except BaseException:
        _kill(proc)
        raise
    if proc.returncode != 0:
        raise _error(what, args[0], err.decode("utf-8", "replace"))
    return out.decode("utf-8", "surrogateescape")


def _kill(proc: subprocess.Popen) -> None:
    _signal_group(proc)
    proc.communicate()


def _signal_group(proc: subprocess.Popen) -> None:
    """SIGKILL git and what it started (its session: ssh, a remote helper)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _error(what: str, command: str, stderr: str) -> Exception:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    detail = "; ".join(ln.removeprefix("fatal: ") for ln in lines[-3:])
    detail = redact(detail) or f"git {command} failed"
    lowered = stderr.lower()
    message = f"{what}: {detail}"
    if "couldn't find remote ref" in lowered or "not found" in lowered:
        return NotFound(message)
    if any(s in lowered for s in ("authentication failed", "could not read username",
                                  "terminal prompts disabled", "permission denied")):  # fmt: skip
        return Unauthorized(message)
    if "not allowed" in lowered or "not a valid" in lowered or "invalid" in lowered:
        return InvalidArgument(message)
    return Unavailable(message)
