"""Seccomp profiles for the OCI spec: kiln's default (a JSON data file), a user file, or none."""

from __future__ import annotations

import platform
from importlib import resources
from typing import Any

from kiln.errors import InvalidArgument
from kiln.oci import strict_json

DEFAULT_PROFILE = "seccomp_default.json"
MAX_PROFILE_BYTES = 1024 * 1024


def _strict_json(text: str, where: str) -> dict[str, Any]:
    try:
        data = strict_json.parse(text)
    except ValueError as e:
        raise InvalidArgument(f"--security-opt seccomp={where}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("defaultAction"), str):
        raise InvalidArgument(
            f"--security-opt seccomp={where}: a profile is an object with a defaultAction"
        )
    return data


def _applies(rule: dict[str, Any], caps: set[str]) -> bool:
    wanted = rule.get("includes", {}).get("caps", [])
    unwanted = rule.get("excludes", {}).get("caps", [])
    return all(c in caps for c in wanted) and not any(c in caps for c in unwanted)


def _architectures(profile: dict[str, Any]) -> list[str]:
    if "architectures" in profile:
        return list(profile["architectures"])
    arch_map = profile.get("archMap", {})
    return list(arch_map.get(platform.machine(), []))


def to_linux_seccomp(profile: dict[str, Any], caps: list[str]) -> dict[str, Any]:
    """A containers-style profile (with includes/excludes by capability) -> ``linux.seccomp``.

    Rules are merged so that no syscall gets two conflicting actions.
    """
    capset = set(caps)
    rules = [r for r in profile.get("syscalls", []) if _applies(r, capset)]
    allowed: list[str] = []
    others: list[dict[str, Any]] = []
    for rule in rules:
        names = rule.get("names") or ([rule["name"]] if "name" in rule else [])
        if rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args"):
            allowed.extend(n for n in names if n not in allowed)
        else:
            others.append({**rule, "names": list(names)})
    out_rules: list[dict[str, Any]] = []
    if allowed:
        out_rules.append({"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"})
    for rule in others:
        names = [n for n in rule["names"] if n not in allowed or rule.get("args")]
        if names:
            kept = {k: v for k, v in rule.items() if k in ("action", "errnoRet", "args")}
            out_rules.append({"names": names, **kept})
    result: dict[str, Any] = {"defaultAction": profile["defaultAction"], "syscalls": out_rules}
    if "defaultErrnoRet" in profile:
        result["defaultErrnoRet"] = profile["defaultErrnoRet"]
    archs = _architectures(profile)
    if archs:
        result["architectures"] = archs
    return result


def load_profile(setting: str) -> dict[str, Any] | None:
    """``default`` -> kiln's profile, ``unconfined`` -> None, anything else: a JSON file path."""
    if setting == "unconfined":
        return None
    if setting in ("", "default"):
        text = resources.files(__package__).joinpath(DEFAULT_PROFILE).read_text("utf-8")
        return _strict_json(text, "default")
    try:
        with open(setting, encoding="utf-8") as f:
            text = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        raise InvalidArgument(
            f"--security-opt seccomp={setting}: cannot read the profile: {e.strerror}"
        ) from None
    if len(text) > MAX_PROFILE_BYTES:
        raise InvalidArgument(f"--security-opt seccomp={setting}: the profile is too large")
    return _strict_json(text, setting)
