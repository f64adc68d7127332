"""Editing the image config of a working container (buildah's ``config`` setters).

``ConfigEditor`` holds the ``ImageConfig`` being edited plus the manifest annotations and
offers one method per field; the Dockerfile engine and ``kiln config`` both use it. The
``parse_*`` helpers turn flag strings (JSON or shell form, ``K=V``/``K-``, Go durations)
into values.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
from dataclasses import replace

from kiln.errors import InvalidArgument
from kiln.oci import Healthcheck, ImageConfig, RuntimeConfig
from kiln.oci.platform import normalize_arch
from kiln.util.lazy_pattern import lazy_pattern
from kiln.util.timefmt import parse_go_duration

DEFAULT_SHELL = ("/bin/sh", "-c")


class ConfigEditor:
    """A mutable view of an ``ImageConfig`` and the manifest annotations of a container."""

    def __init__(self, image: ImageConfig, annotations: dict[str, str] | None = None):
        self.image = image
        self.annotations: dict[str, str] = dict(annotations or {})

    def copy(self) -> ConfigEditor:
        """An editor of the same config whose edits this one does not see."""
        return ConfigEditor(self.image, self.annotations)

    # -- the runtime part -----------------------------------------------------------------

    @property
    def runtime(self) -> RuntimeConfig:
        return self.image.config

    def _set(self, **changes) -> None:
        self.image = self.image.evolve(config=replace(self.image.config, **changes))

    def set_cmd(self, cmd: list[str] | None) -> None:
        self._set(cmd=None if cmd is None else tuple(cmd))

    def set_entrypoint(self, entrypoint: list[str] | None) -> None:
        self._set(entrypoint=None if entrypoint is None else tuple(entrypoint))

    def set_env(self, key: str, value: str, *, in_place: bool = False) -> None:
        """Set ``key`` (see ``RuntimeConfig.with_env``: ``in_place`` for Dockerfile ENV)."""
        if not key or "=" in key:
            raise InvalidArgument(f"environment variable name {key!r} is invalid")
        self.image = self.image.evolve(config=self.runtime.with_env(key, value, in_place=in_place))

    def clear_env(self) -> None:
        self._set(env=())

    def unset_env(self, key: str) -> None:
        self.image = self.image.evolve(config=self.runtime.without_env(key))

    def env(self) -> dict[str, str]:
        return self.runtime.env_dict()

    def set_label(self, key: str, value: str, *, empty_name_ok: bool = False) -> None:
        """``empty_name_ok``: a Dockerfile LABEL whose name expands to nothing
        (``LABEL $UNSET=v``) sets a label named "", as buildah and BuildKit do; so does a
        build's ``labels={"": "v"}`` over the Docker API, as dockerd does."""
        if not key and not empty_name_ok:
            raise InvalidArgument("a label needs a name: use --label NAME=VALUE")
        self._set(labels={**self.runtime.labels, key: value})

    def clear_labels(self) -> None:
        self._set(labels={})

    def unset_label(self, key: str) -> None:
        self._set(labels={k: v for k, v in self.runtime.labels.items() if k != key})

    def set_annotation(self, key: str, value: str) -> None:
        if not key:
            raise InvalidArgument("an annotation needs a name: use --annotation NAME=VALUE")
        self.annotations[key] = value

    def unset_annotation(self, key: str) -> None:
        self.annotations.pop(key, None)

    def add_port(self, port: str) -> None:
        port = normalize_port(port)
        if port not in self.runtime.exposed_ports:
            self._set(exposed_ports=(*self.runtime.exposed_ports, port))

    def remove_port(self, port: str) -> None:
        port = normalize_port(port)
        self._set(exposed_ports=tuple(p for p in self.runtime.exposed_ports if p != port))

    def clear_ports(self) -> None:
        self._set(exposed_ports=())

    def add_volume(self, path: str) -> None:
        if not path:
            raise InvalidArgument("a volume needs a path")
        if path not in self.runtime.volumes:
            self._set(volumes=(*self.runtime.volumes, path))

    def remove_volume(self, path: str) -> None:
        self._set(volumes=tuple(v for v in self.runtime.volumes if v != path))

    def clear_volumes(self) -> None:
        self._set(volumes=())

    def set_working_dir(self, path: str) -> None:
        self._set(working_dir=path)

    def set_user(self, user: str) -> None:
        self._set(user=user)

    def set_stop_signal(self, sig: str) -> None:
        self._set(stop_signal=normalize_signal(sig) if sig else "")

    def set_healthcheck(self, check: Healthcheck | None) -> None:
        self._set(healthcheck=check)

    def set_shell(self, shell: list[str]) -> None:
        self._set(shell=tuple(shell))

    def add_onbuild(self, trigger: str) -> None:
        self._set(on_build=(*self.runtime.on_build, trigger))

    def clear_onbuild(self) -> None:
        self._set(on_build=())

    def set_hostname(self, name: str) -> None:
        """Docker's ``config.Hostname``; "" removes it."""
        self._set_runtime_extra("Hostname", name)

    def set_domainname(self, name: str) -> None:
        """Docker's ``config.Domainname``; "" removes it."""
        self._set_runtime_extra("Domainname", name)

    def _set_runtime_extra(self, key: str, value: str) -> None:
        extra = {k: v for k, v in self.runtime.extra.items() if k != key}
        if value:
            extra[key] = value
        self._set(extra=extra)

    def set_args_escaped(self, value: bool) -> None:
        self._set(args_escaped=value)

    # -- the image part -------------------------------------------------------------------

    def set_author(self, author: str) -> None:
        self.image = self.image.evolve(author=author)

    def set_os(self, os_name: str) -> None:
        self.image = self.image.evolve(os=os_name)

    def set_architecture(self, arch: str) -> None:
        arch, variant = normalize_arch(arch, self.image.variant)
        self.image = self.image.evolve(architecture=arch, variant=variant)

    def set_os_version(self, version: str) -> None:
        self.image = self.image.evolve(os_version=version)

    def add_os_feature(self, feature: str) -> None:
        if feature not in self.image.os_features:
            self.image = self.image.evolve(os_features=(*self.image.os_features, feature))

    def remove_os_feature(self, feature: str) -> None:
        features = tuple(f for f in self.image.os_features if f != feature)
        self.image = self.image.evolve(os_features=features)

    def set_variant(self, variant: str) -> None:
        self.image = self.image.evolve(variant=variant)

    def set_comment(self, comment: str) -> None:
        extra = dict(self.image.extra)
        if comment:
            extra["comment"] = comment
        else:
            extra.pop("comment", None)
        self.image = self.image.evolve(extra=extra)

    def shell(self) -> tuple[str, ...]:
        return self.runtime.shell or DEFAULT_SHELL

    # -- what only Docker's config has ----------------------------------------------------

    def docker_only_settings(self) -> list[str]:
        """The settings an OCI image config has no field for that this config sets, by
        their Dockerfile names (buildah's: an OCI image leaves them out)."""
        rc = self.runtime
        present = (
            ("SHELL", rc.shell), ("HEALTHCHECK", rc.healthcheck), ("ONBUILD", rc.on_build),
            ("COMMENT", self.image.extra.get("comment")),
            ("HOSTNAME", rc.extra.get("Hostname")), ("DOMAINNAME", rc.extra.get("Domainname")),
        )  # fmt: skip
        return [what for what, value in present if value]

    def drop_docker_only_settings(self) -> None:
        """Leave out what ``docker_only_settings`` names, as an OCI image from buildah
        commit has none of it."""
        self.set_shell([])
        self.set_healthcheck(None)
        self.clear_onbuild()
        self.set_comment("")
        self.set_hostname("")
        self.set_domainname("")


# -- flag parsers -------------------------------------------------------------------------------


def _json_string_list(text: str) -> list[str] | None:
    """``text`` as a JSON array of strings, or None when it is not one."""
    stripped = text.strip()
    if not stripped.startswith("["):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse_json_or_words(text: str, what: str) -> list[str]:
    """A JSON array of strings, or else the text split as shell words (buildah's ``--cmd``)."""
    value = _json_string_list(text)
    if value is not None:
        return value
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InvalidArgument(f"{what} {text!r} cannot be parsed: {exc}") from None


def parse_exec_or_shell(text: str, shell: tuple[str, ...]) -> list[str] | None:
    """JSON array -> as is (exec form); other text -> ``shell + [text]``; blank -> None (unset)."""
    if not text.strip():
        return None
    value = _json_string_list(text)
    return value if value is not None else [*shell, text]


def split_key_value(item: str, flag: str) -> tuple[str, str | None]:
    """``K=V`` -> (K, V); ``K-`` -> (K, None) meaning remove; a bare ``K`` -> (K, "")."""
    key, sep, value = item.partition("=")
    if sep:
        if not key:
            raise InvalidArgument(f"{flag} {item!r} is invalid: use NAME=VALUE, or NAME- to remove")
        return key, value
    if item.endswith("-") and len(item) > 1:
        return item[:-1], None
    if not item:
        raise InvalidArgument(f"{flag} needs NAME=VALUE, or NAME- to remove")
    return item, ""


_VAR = lazy_pattern(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_env(value: str, env: dict[str, str]) -> str:
    """Expand ``$VAR``/``${VAR}`` from the config's environment (``--env PATH=$PATH:/x``)."""
    return _VAR().sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def normalize_port(port: str) -> str:
    """``80`` -> ``80/tcp``; ranges ``8000-8010/tcp`` kept; the protocol is kept as written
    (``53/UDP`` stays, as buildah keeps it)."""
    number, _, proto = port.strip().partition("/")
    proto = proto or "tcp"
    m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", number)
    if not m or proto.lower() not in ("tcp", "udp", "sctp") or int(m.group(1)) > 65535:
        raise InvalidArgument(f"port {port!r} is invalid: use PORT[/tcp|udp|sctp], e.g. 8080/tcp")
    if m.group(2) and not int(m.group(1)) <= int(m.group(2)) <= 65535:
        raise InvalidArgument(f"port range {port!r} is invalid")
    return f"{number}/{proto}"


def normalize_signal(sig: str) -> str:
    """``TERM``/``SIGTERM``/``15`` are accepted, and kept as written (``STOPSIGNAL KILL``
    stays ``KILL``), as buildah and BuildKit keep them."""
    given = sig.strip()
    text = given.upper()
    if text.isdigit() and 0 < int(text) < 65:
        return given
    if text.startswith("SIGRTMIN") or text.startswith("SIGRTMAX"):
        return given
    name = text[3:] if text.startswith("SIG") else text
    if not isinstance(getattr(signal, "SIG" + name, None), signal.Signals):
        raise InvalidArgument(f"stop signal {sig!r} is not a signal name or number")
    return given


def parse_duration(text: str, flag: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``; plain ``0``) -> nanoseconds."""
    text = text.strip()
    nanos = parse_go_duration(text)
    if nanos is None or nanos < 0:
        raise InvalidArgument(f"{flag} {text!r} is not a duration: use e.g. 30s, 1m30s, 500ms")
    return nanos


def parse_healthcheck(text: str, base: Healthcheck | None = None) -> Healthcheck | None:
    """``NONE``, ``CMD-SHELL cmd``, ``CMD ["a","b"]``, ``CMD a b`` or plain shell text.

    Blank removes the healthcheck. Timings of ``base`` are kept.
    """
    stripped = text.strip()
    if not stripped:
        return None
    head, _, rest = stripped.partition(" ")
    rest = rest.strip()
    if head.upper() == "NONE":
        test: tuple[str, ...] = ("NONE",)
    elif head.upper() == "CMD-SHELL":
        test = ("CMD-SHELL", rest)
    elif head.upper() == "CMD":
        if not rest:
            raise InvalidArgument("--healthcheck CMD needs a command")
        test = ("CMD", *parse_json_or_words(rest, "--healthcheck"))
    else:
        test = ("CMD-SHELL", stripped)
    return replace(base, test=test) if base else Healthcheck(test=test)
