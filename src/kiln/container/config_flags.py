"""``kiln config`` flags (buildah config's) applied to a ``ConfigEditor``.

``ConfigSettings`` holds what the user gave (strings, as typed); ``apply_settings`` parses
and applies them in a fixed order, so the CLI and the API server behave the same.
"""

from __future__ import annotations

import os
from dataclasses import field, replace
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci import Healthcheck
from kiln.util.lazy_dataclass import dataclass

from .config_edit import (
    ConfigEditor,
    expand_env,
    parse_duration,
    parse_exec_or_shell,
    parse_healthcheck,
    parse_json_or_words,
    split_key_value,
)


@dataclass
class ConfigSettings:
    cmd: str | None = None
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    annotations: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    workingdir: str | None = None
    user: str | None = None
    stop_signal: str | None = None
    healthcheck: str | None = None
    healthcheck_interval: str | None = None
    healthcheck_timeout: str | None = None
    healthcheck_start_period: str | None = None
    healthcheck_start_interval: str | None = None
    healthcheck_retries: int | None = None
    shell: str | None = None
    onbuild: list[str] = field(default_factory=list)
    author: str | None = None
    created_by: str | None = None
    comment: str | None = None
    history_comment: str | None = None
    os: str | None = None
    arch: str | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: list[str] = field(default_factory=list)
    hostname: str | None = None
    domainname: str | None = None
    #: record a history entry per setting (``buildah config --add-history``)
    add_history: bool = False

    def is_empty(self) -> bool:
        return replace(self, add_history=False) == ConfigSettings()


@dataclass
class HistorySettings:
    """What ``kiln config`` sets for the next commit's history entry (kept in the state)."""

    created_by: str | None = None
    history_comment: str | None = None
    #: the ``created_by`` of each entry ``add_history`` asks for, in buildah's order
    entries: list[str] = field(default_factory=list)


def apply_settings(editor: ConfigEditor, s: ConfigSettings) -> HistorySettings:
    """Apply ``s`` to ``editor``; returns the history fields for the container state."""
    if s.shell is not None:
        shell = parse_json_or_words(s.shell, "--shell")
        if not shell:
            raise InvalidArgument('--shell needs a command, e.g. \'["/bin/bash", "-c"]\'')
        editor.set_shell(shell)
    if s.author is not None:
        editor.set_author(s.author)
    if s.os is not None:
        editor.set_os(s.os)
    if s.arch is not None:
        editor.set_architecture(s.arch)
    if s.variant is not None:
        editor.set_variant(s.variant)
    if s.comment is not None:
        editor.set_comment(s.comment)
    if s.os_version is not None:
        editor.set_os_version(s.os_version)
    for feature in s.os_features:
        if feature == "-":
            editor.image = editor.image.evolve(os_features=())
        elif feature.endswith("-"):
            editor.remove_os_feature(feature[:-1])
        else:
            editor.add_os_feature(feature)
    if s.hostname is not None:
        editor.set_hostname(s.hostname)
    if s.domainname is not None:
        editor.set_domainname(s.domainname)
    for item in s.env:
        if item == "-":
            editor.clear_env()
            continue
        key, value = split_key_value(item, "--env")
        if value is None:
            editor.unset_env(key)
        elif "=" not in item:
            editor.set_env(key, _host_value(key))
        else:
            editor.set_env(key, expand_env(value, editor.env()))
    for item in s.labels:
        if item == "-":
            editor.clear_labels()
            continue
        key, value = split_key_value(item, "--label")
        _set_or_unset(editor.set_label, editor.unset_label, key, value)
    for item in s.annotations:
        if item == "-":
            editor.annotations.clear()
            continue
        key, value = split_key_value(item, "--annotation")
        _set_or_unset(editor.set_annotation, editor.unset_annotation, key, value)
    for port in s.ports:
        if port == "-":
            editor.clear_ports()
        elif port.endswith("-"):
            editor.remove_port(port[:-1])
        else:
            editor.add_port(port)
    for volume in s.volumes:
        if volume == "-":
            editor.clear_volumes()
        elif volume.endswith("-"):
            editor.remove_volume(volume[:-1])
        else:
            editor.add_volume(volume)
    if s.workingdir is not None:
        editor.set_working_dir(s.workingdir)
    if s.user is not None:
        editor.set_user(s.user)
    if s.stop_signal is not None:
        editor.set_stop_signal(s.stop_signal)
    if s.entrypoint is not None:
        editor.set_entrypoint(parse_exec_or_shell(s.entrypoint, editor.shell()))
    if s.cmd is not None:
        editor.set_cmd(parse_json_or_words(s.cmd, "--cmd") if s.cmd.strip() else None)
    for trigger in s.onbuild:
        editor.add_onbuild(trigger)
    _apply_healthcheck(editor, s)
    entries = history_entries(s, editor) if s.add_history else []
    return HistorySettings(s.created_by, s.history_comment, entries)


def docker_only_given(s: ConfigSettings, editor: ConfigEditor) -> list[str]:
    """What ``s`` set (non-empty) that an OCI image has no field for: buildah config warns
    of each when the container commits to OCI (``ConfigEditor.docker_only_settings``)."""
    given = {
        "SHELL": s.shell, "HEALTHCHECK": s.healthcheck, "ONBUILD": s.onbuild,
        "COMMENT": s.comment, "HOSTNAME": s.hostname, "DOMAINNAME": s.domainname,
    }  # fmt: skip
    present = editor.docker_only_settings()
    return [what for what in present if given[what]]


def _host_value(key: str) -> str:
    """``--env NAME``: NAME's value here, as buildah takes it; an unset or empty one is
    refused as there (an empty ``NAME=`` in the image was never what was meant)."""
    value = os.environ.get(key, "")
    if not value:
        raise InvalidArgument(
            f"--env {key}: {key} has no value here to take; give one with --env {key}=VALUE"
        )
    return value


def history_entries(s: ConfigSettings, editor: ConfigEditor) -> list[str]:
    """The history lines ``buildah config --add-history`` records for ``s``, in buildah's
    order (its kind of setting, not the command line's), each a Dockerfile-like ``#(nop)``
    line. buildah records ``ENV `` even when no --env is given; kiln only for a setting
    given. ``editor`` has ``s`` applied (a healthcheck removed reads ``HEALTHCHECK NONE``)."""
    nop = "/bin/sh -c #(nop) "
    out: list[str] = []
    if s.user is not None:
        out.append(f"USER {s.user}")
    if s.shell is not None:
        out.append(f"SHELL {s.shell}")
    if s.stop_signal is not None:
        out.append(f"STOPSIGNAL {s.stop_signal}")
    if s.ports:
        out.append("EXPOSE " + " ".join(s.ports))
    if s.env:
        out.append("ENV " + " ".join(s.env))
    if s.entrypoint is not None:
        out.append(f"ENTRYPOINT {s.entrypoint}")
    if s.cmd is not None:
        out.append(f"CMD {s.cmd}")
    out += [f"VOLUME {v}" for v in s.volumes]
    healthcheck = _healthcheck_line(s, editor)
    if healthcheck:
        out.append(healthcheck)
    if s.labels:
        out.append("LABEL " + " ".join(s.labels))
    if s.workingdir is not None:
        out.append(f"WORKDIR {s.workingdir}")
    out += [f"ONBUILD {t}" for t in s.onbuild]
    return [nop + line for line in out]


def _healthcheck_line(s: ConfigSettings, editor: ConfigEditor) -> str:
    timings = (
        ("interval", s.healthcheck_interval),
        ("retries", None if s.healthcheck_retries is None else str(s.healthcheck_retries)),
        ("start-period", s.healthcheck_start_period),
        ("timeout", s.healthcheck_timeout),
    )
    if s.healthcheck is None and all(v is None for _, v in timings):
        return ""
    if editor.runtime.healthcheck is None:
        return "HEALTHCHECK NONE"
    flags = "".join(f"--{name}={value} " for name, value in timings if value is not None)
    return f"HEALTHCHECK {flags}{s.healthcheck or ''}"


def _set_or_unset(setter, unsetter, key: str, value: str | None) -> None:
    if value is None:
        unsetter(key)
    else:
        setter(key, value)


#: what a healthcheck set where the image had none starts from, as buildah config's does
#: (30 s interval and timeout, 3 retries: what Docker and podman take for 0 anyway)
_NEW_HEALTHCHECK = Healthcheck(interval=30 * 10**9, timeout=30 * 10**9, retries=3)


def _apply_healthcheck(editor: ConfigEditor, s: ConfigSettings) -> None:
    check = editor.runtime.healthcheck
    if s.healthcheck is not None:
        check = parse_healthcheck(s.healthcheck, check or _NEW_HEALTHCHECK)
    timings = {
        "interval": s.healthcheck_interval,
        "timeout": s.healthcheck_timeout,
        "start_period": s.healthcheck_start_period,
        "start_interval": s.healthcheck_start_interval,
    }
    changes: dict[str, Any] = {}
    for attr, text in timings.items():
        if text is not None:
            changes[attr] = parse_duration(text, "--healthcheck-" + attr.replace("_", "-"))
    if s.healthcheck_retries is not None:
        if s.healthcheck_retries < 0:
            raise InvalidArgument("--healthcheck-retries must not be negative")
        changes["retries"] = s.healthcheck_retries
    if changes:
        if check is None:
            raise InvalidArgument("healthcheck timings need a --healthcheck command as well")
        check = replace(check, **changes)
    if s.healthcheck is not None or changes:
        editor.set_healthcheck(check)
