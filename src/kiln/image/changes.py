"""``--change`` instructions (``kiln import``, ``kiln commit``) applied to a runtime config.

The small Dockerfile-like syntax: ``CMD``, ``ENTRYPOINT``, ``ENV``, ``EXPOSE``,
``LABEL``, ``USER``, ``VOLUME``, ``WORKDIR``, ``STOPSIGNAL``, ``ONBUILD``. CMD,
ENTRYPOINT and VOLUME take a JSON array or the shell form; ENV and LABEL take
``key=value`` pairs (quotes allowed) or the legacy ``ENV key value``.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import replace

from kiln.errors import InvalidArgument
from kiln.oci.config import RuntimeConfig

SUPPORTED = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)


def _json_array(value: str) -> list[str] | None:
    text = value.strip()
    if not text.startswith("["):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        return None
    return parsed


def _command(value: str) -> tuple[str, ...]:
    parsed = _json_array(value)
    if parsed is not None:
        return tuple(parsed)
    if not value.strip():
        return ()
    return ("/bin/sh", "-c", value.strip())


def _words(change: str, value: str) -> list[str]:
    try:
        return shlex.split(value, posix=True)
    except ValueError as exc:
        raise InvalidArgument(f'--change "{change}": {exc}') from None


def _pairs(change: str, keyword: str, value: str) -> list[tuple[str, str]]:
    words = _words(change, value)
    if not words:
        raise InvalidArgument(f'--change "{change}": {keyword} needs key=value')
    if "=" not in words[0]:
        if keyword == "ENV" and len(words) >= 2:  # legacy "ENV key value with spaces"
            rest = value.strip()[len(value.strip().split(None, 1)[0]) :].strip()
            return [(words[0], rest)]
        raise InvalidArgument(f'--change "{change}": {keyword} needs key=value, got "{words[0]}"')
    out = []
    for word in words:
        key, sep, val = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f'--change "{change}": "{word}" is not key=value')
        out.append((key, val))
    return out


def _port(change: str, spec: str) -> str:
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f'--change "{change}": unknown protocol "{proto}" in {spec}')
    low, _, high = port.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        raise InvalidArgument(f'--change "{change}": "{spec}" is not a port')
    return f"{port}/{proto}"


def apply_change(cfg: RuntimeConfig, change: str) -> RuntimeConfig:
    """``cfg`` with one ``--change`` instruction applied."""
    text = change.strip()
    keyword, _, value = text.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        value = more + " " + value
    keyword = keyword.upper()
    value = value.strip()
    if keyword not in SUPPORTED:
        raise InvalidArgument(
            f'--change "{change}": {keyword or "nothing"} is not one of {", ".join(SUPPORTED)}'
        )
    if keyword == "CMD":
        return replace(cfg, cmd=_command(value))
    if keyword == "ENTRYPOINT":
        return replace(cfg, entrypoint=_command(value))
    if keyword == "ENV":
        for key, val in _pairs(change, keyword, value):
            cfg = cfg.with_env(key, val)
        return cfg
    if keyword == "LABEL":
        labels = dict(cfg.labels)
        labels.update(_pairs(change, keyword, value))
        return replace(cfg, labels=labels)
    if keyword == "EXPOSE":
        ports = list(cfg.exposed_ports)
        for spec in _words(change, value):
            port = _port(change, spec)
            if port not in ports:
                ports.append(port)
        return replace(cfg, exposed_ports=tuple(ports))
    if keyword == "VOLUME":
        paths = _json_array(value)
        paths = paths if paths is not None else _words(change, value)
        volumes = list(cfg.volumes) + [p for p in paths if p not in cfg.volumes]
        return replace(cfg, volumes=tuple(volumes))
    if not value:
        raise InvalidArgument(f'--change "{change}": {keyword} needs a value')
    if keyword == "USER":
        return replace(cfg, user=value)
    if keyword == "WORKDIR":
        return replace(cfg, working_dir=posixpath.join(cfg.working_dir or "/", value))
    if keyword == "STOPSIGNAL":
        return replace(cfg, stop_signal=value)
    return replace(cfg, on_build=(*cfg.on_build, value))  # ONBUILD


def apply_changes(cfg: RuntimeConfig, changes: list[str] | tuple[str, ...]) -> RuntimeConfig:
    for change in changes:
        cfg = apply_change(cfg, change)
    return cfg
