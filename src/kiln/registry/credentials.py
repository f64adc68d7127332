"""Registry credentials: where they come from, in podman's order, and the auth file.

Lookup order for a registry (and optionally a repository within it):

1. ``--creds user:pass``; then credentials given for this operation only, per registry
   (``auths``: what an API client sent in ``X-Registry-Auth``/``X-Registry-Config``;
   matched like an auth file's ``auths``, never a helper);
2. the containers auth file: ``--authfile`` or ``$REGISTRY_AUTH_FILE`` or
   ``$XDG_RUNTIME_DIR/containers/auth.json``; then
   ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/...``);
3. Docker's ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``);
4. Docker's legacy ``~/.dockercfg`` (``{"host": {"auth": ..., "email": ...}}``, no
   ``auths`` wrapper, keys naming a host only), read last and never written, as podman's.

A file named by ``--authfile`` or ``$REGISTRY_AUTH_FILE`` is read first and the others
still after it, as podman 4.3 does (containers/image 5.23); podman 4.4 reads it alone.

In each file ``credHelpers[host]`` wins, then ``auths`` (the most specific key:
``host/ns/repo`` before ``host/ns`` before ``host``; ``https://index.docker.io/v1/``
means docker.io), then ``credsStore``. An entry holds ``auth`` (base64 ``user:password``)
and/or an ``identitytoken`` (an OAuth2 refresh token, which the auth flow trades at the
token server). Helpers run as ``docker-credential-<name> get`` reading the server URL on
stdin. Secrets never appear in reprs or messages.

Writing (login, logout) goes to the first file only, as podman's does: a ``credHelpers``
entry for exactly the host sends the credential to that helper (``store``/``erase``);
everything else goes to ``auths``, other keys of the file kept. Each update holds the
file's directory locked, so logins at once all land; a lock held longer than
``AUTH_FILE_LOCK_WAIT`` is an error naming the directory and its holder, not a hang.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TypeVar

from kiln.errors import InvalidArgument, NotFound
from kiln.registry.credential import Credential, parse_creds
from kiln.registry.credential_helpers import erase_from_helper, run_helper, store_in_helper
from kiln.util.atomic import atomic_write, refuse_symlinks
from kiln.util.locks import directory_lock
from kiln.util.output import naming
from kiln.util.regular_file import open_regular_file
from kiln.util.rootless import rootless_uid, runtime_base

__all__ = ["Credential", "parse_creds", "lookup", "store_credential", "remove_credential"]

log = logging.getLogger("kiln.registry")

DOCKER_IO = "docker.io"
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_DOCKER_ALIASES = {"index.docker.io", "registry-1.docker.io", DOCKER_IO}

MAX_AUTH_FILE_BYTES = 16 << 20  # a few KB in practice; a file beyond this is no auth file
# seconds a login or logout waits for the auth file's directory lock: another kiln's update
# takes milliseconds, and with --authfile in /tmp any local user could hold it for ever
AUTH_FILE_LOCK_WAIT = 30.0

# an auth file as read: its sections are checked where they are used, the rest is kept
AuthFile = dict[str, object]
Entry = TypeVar("Entry")


def normalize_key(key: str) -> str:
    """An auth-file key as ``host[/path]``: schemes and ``/v1/`` dropped, docker.io unified."""
    key = key.strip()
    if "://" in key:
        key = key.split("://", 1)[1].split("/", 1)[0]  # legacy keys name only a host
    key = key.rstrip("/")
    host, sep, rest = key.partition("/")
    if host in _DOCKER_ALIASES:
        host = DOCKER_IO
    return host + (sep + rest if rest else "")


def normalize_registry(registry: str) -> str:
    return normalize_key(registry)


def _candidates(registry: str, repository: str | None) -> list[str]:
    host, _, path = normalize_key(registry).partition("/")
    keys: list[str] = []
    path = repository or path
    parts = [p for p in path.split("/") if p]
    for n in range(len(parts), 0, -1):
        keys.append(host + "/" + "/".join(parts[:n]))
    keys.append(host)
    return keys


def entries_for(
    entries: Mapping[str, Entry], registry: str, repository: str | None
) -> Iterator[tuple[str, Entry]]:
    """The ``(key, entry)`` pairs of an ``auths`` map that name ``registry`` (and
    ``repository``), the most specific first; keys as written (schemes, ``/v1/``, aliases)."""
    by_key = {normalize_key(k): (k, v) for k, v in entries.items()}
    for cand in _candidates(registry, repository):
        if cand in by_key:
            yield by_key[cand]


def auth_file_for_write(authfile: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The auth file login/logout use: --authfile, $REGISTRY_AUTH_FILE, else the runtime dir."""
    env = os.environ if env is None else env
    if authfile:
        return authfile
    if env.get("REGISTRY_AUTH_FILE"):
        return env["REGISTRY_AUTH_FILE"]
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containers", "auth.json")
    if rootless_uid() is not None:  # a user's runtime dir, not /run (podman's too)
        return os.path.join(runtime_base(), "containers", "auth.json")
    return f"/run/containers/{os.getuid()}/auth.json"


def auth_files_for_read(
    authfile: str | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    config_home = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    docker_dir = env.get("DOCKER_CONFIG") or os.path.join(home, ".docker")
    paths = [
        auth_file_for_write(authfile, env),
        os.path.join(config_home, "containers", "auth.json"),
        os.path.join(docker_dir, "config.json"),
    ]
    out: list[str] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def legacy_docker_file(env: Mapping[str, str] | None = None) -> str:
    """Docker's pre-1.7 ``~/.dockercfg`` (in ``$HOME`` even with ``$DOCKER_CONFIG``)."""
    env = os.environ if env is None else env
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), ".dockercfg")


def read_legacy_file(path: str) -> AuthFile:
    """``~/.dockercfg`` as an auth file: its top level is the ``auths`` map, and a key
    names a host only (podman cuts ``host/anything`` to ``host``)."""
    obj = read_auth_file(path)
    return {"auths": {normalize_key(k).split("/", 1)[0]: v for k, v in obj.items()}}


def read_auth_file(path: str) -> AuthFile:
    """The parsed file, ``{}`` when absent; a broken file is a clear error."""
    try:
        # a regular file (a FIFO blocked every pull, a link to /dev/zero filled memory)
        with open_regular_file(path, "auth file", follow_links=True) as f:
            raw = f.read(MAX_AUTH_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidArgument(f"cannot read auth file {path}: {exc.strerror}") from None
    if len(raw) > MAX_AUTH_FILE_BYTES:
        raise InvalidArgument(f"auth file {path} is larger than {MAX_AUTH_FILE_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        obj = json.loads(raw)  # not UTF-8 is not JSON either
    except ValueError:
        raise InvalidArgument(f"auth file {path} is not valid JSON; fix or remove it") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"auth file {path} must hold a JSON object")
    return obj


def _decode_entry(entry: object, where: str) -> Credential | None:
    if not isinstance(entry, dict):
        return None
    token = entry.get("identitytoken") or ""
    auth = entry.get("auth") or ""
    if not isinstance(token, str) or not isinstance(auth, str):
        raise InvalidArgument(f"auth entry for {where} must hold strings (auth, identitytoken)")
    username, password = "", ""
    if auth:
        try:
            decoded = base64.b64decode(auth, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidArgument(
                f"auth entry for {where} is not valid base64 user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise InvalidArgument(f"auth entry for {where} does not decode to user:password")
    if not (username or password or token):
        return None
    return Credential(username, password, token)


def _helper_server(host: str) -> str:
    return DOCKER_HUB_SERVER if host == DOCKER_IO else host


def lookup_in_file(
    obj: Mapping[str, object], registry: str, repository: str | None, path: str
) -> Credential | None:
    host = normalize_registry(registry).split("/", 1)[0]
    helpers = obj.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if normalize_key(key) == host and helper:
                return run_helper(str(helper), _helper_server(host))
    auths = obj.get("auths") or {}
    if isinstance(auths, dict):
        for key, entry in entries_for(auths, registry, repository):
            cred = _decode_entry(entry, f"{key} in {path}")
            if cred is not None:
                return cred
    store = obj.get("credsStore")
    if store:
        return run_helper(str(store), _helper_server(host))
    return None


def lookup(
    registry: str,
    repository: str | None = None,
    *,
    creds: str | Credential | None = None,
    authfile: str | None = None,
    env: Mapping[str, str] | None = None,
    auths: Mapping[str, Credential] | None = None,
) -> Credential | None:
    """Credentials for ``registry`` (``host[:port]``), optionally for one repository path."""
    if creds:
        return creds if isinstance(creds, Credential) else parse_creds(creds)
    for _key, given in entries_for(auths or {}, registry, repository):
        return given
    files = [(p, read_auth_file) for p in auth_files_for_read(authfile, env)]
    for path, read in [*files, (legacy_docker_file(env), read_legacy_file)]:
        obj = read(path)
        if not obj:
            continue
        cred = lookup_in_file(obj, registry, repository, path)
        if cred is not None:
            log.debug("using credentials for %s from %s", registry, path)
            return cred
    return None


@contextmanager
def _auth_file_update(path: str) -> Iterator[None]:
    """Hold the auth file's directory locked while its content is read, changed and
    replaced: two logins at once both land (each rename would drop the other's entry)."""
    refuse_symlinks(path, "auth file")  # before reading what a planted link leads to
    directory = os.path.dirname(os.path.abspath(path))
    with ExitStack() as stack:
        with naming(path):  # a directory kiln may not make or open: an error, no traceback
            if not os.path.lexists(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
            stack.enter_context(
                directory_lock(directory, wait=AUTH_FILE_LOCK_WAIT, what="auth file directory")
            )
        yield


def _write_auth_file(path: str, obj: AuthFile) -> None:
    """Replace the auth file atomically (0600): a temp file created ``O_EXCL|O_NOFOLLOW``
    in its directory, renamed over it. A symbolic link as the file or as its directory is
    refused (``private``): credentials never go through a link kiln did not make."""
    data = (json.dumps(obj, indent="\t", ensure_ascii=False) + "\n").encode()
    atomic_write(path, data, mode=0o600, private=True, what="auth file")


def _helper_named_for(obj: AuthFile, key: str) -> str | None:
    """The ``credHelpers`` entry for exactly ``key`` (a host): podman stores and erases
    there instead of in ``auths``; a repository key always goes to ``auths``."""
    helpers = obj.get("credHelpers") or {}
    if not isinstance(helpers, dict):
        return None
    for name, helper in helpers.items():
        if normalize_key(name) == key and helper:
            return str(helper)
    return None


def store_credential(key: str, cred: Credential, authfile: str | None = None) -> str:
    """Record ``cred`` under ``key`` (``host`` or ``host/ns/repo``); returns the file path
    (the auth file names a credential helper for ``key``: the helper keeps it)."""
    path = auth_file_for_write(authfile)
    with _auth_file_update(path):
        obj = read_auth_file(path)
        norm = normalize_key(key)
        helper = _helper_named_for(obj, norm)
        if helper:
            store_in_helper(helper, _helper_server(norm), cred)
            return path
        auths = obj.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise InvalidArgument(f"auth file {path} has an invalid auths section")
        for existing in [k for k in auths if normalize_key(k) == norm]:
            del auths[existing]
        entry: dict[str, str] = {}
        if cred.identity_token:
            entry["identitytoken"] = cred.identity_token
        if cred.username or cred.password:
            entry["auth"] = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
        auths[norm] = entry
        _write_auth_file(path, obj)
    return path


def remove_credential(key: str | None, authfile: str | None = None) -> list[str]:
    """Forget ``key`` (or everything when None: every ``auths`` entry, and what each
    ``credHelpers`` helper keeps, as podman does); returns the keys removed."""
    path = auth_file_for_write(authfile)
    if not os.path.lexists(os.path.dirname(os.path.abspath(path))):
        if key is None:
            return []  # nothing stored, and no directory made to say so
        raise NotFound(f"not logged into {key}")
    with _auth_file_update(path):
        obj = read_auth_file(path)
        auths = obj.get("auths") or {}
        if not isinstance(auths, dict):
            raise InvalidArgument(f"auth file {path} has an invalid auths section")
        if key is None:
            removed = _erase_all_helpers(obj) + list(auths)
            obj["auths"] = {}
        else:
            norm = normalize_key(key)
            helper = _helper_named_for(obj, norm)
            removed = [norm] if helper and erase_from_helper(helper, _helper_server(norm)) else []
            in_file = [k for k in auths if normalize_key(k) == norm]
            if not (removed or in_file):
                raise NotFound(f"not logged into {key}")
            for k in in_file:
                del auths[k]
            removed += in_file
            if not in_file:
                return removed  # only the helper held it: the file is unchanged
        if removed or os.path.exists(path):
            _write_auth_file(path, obj)
    return removed


def _erase_all_helpers(obj: AuthFile) -> list[str]:
    helpers = obj.get("credHelpers") or {}
    if not isinstance(helpers, dict) or not helpers:
        return []
    erased = [
        key
        for key, helper in helpers.items()
        if helper and erase_from_helper(str(helper), _helper_server(normalize_key(key)))
    ]
    del obj["credHelpers"]  # podman drops the section with the helpers' credentials
    return erased
