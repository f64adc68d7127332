"""Seccomp profiles for the OCI spec: kiln's default (a JSON data file), a user file, or none."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
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


_X32_SYSCALL_BIT = 0x40000000
_X86_64_GETPID = 39


@functools.cache
def kernel_runs_x32() -> bool:
    """Whether this kernel takes x32 system calls (``CONFIG_X86_X32_ABI``, not switched off
    with ``syscall.x32=n``): an x32 ``getpid`` answers, else it fails with ENOSYS. Asked
    only when kiln itself runs without a seccomp filter (one that lacks x32 could kill the
    caller for asking); under a filter the answer is yes, which keeps x32 in the profile."""
    if os.uname().machine != "x86_64" or _seccomp_filtered():
        return os.uname().machine == "x86_64"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(_X32_SYSCALL_BIT | _X86_64_GETPID)) >= 0:
        return True
    return ctypes.get_errno() != errno.ENOSYS


def _seccomp_filtered() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return line.split()[1] != "0"
    except (OSError, IndexError):
        pass
    return True  # unknown: assume a filter


def _architectures(profile: dict[str, Any]) -> list[str]:
    """The profile's architectures; from an ``archMap``, those of this machine's, without
    x32 on a kernel that has no x32 ABI. runc compiles the filter for every listed arch at
    each start (about 5 ms of CPU for x32 alone), and leaving x32 out denies nothing that
    could run: without it in the filter an x32 call is refused as a foreign architecture's,
    where the kernel would have answered ENOSYS."""
    if "architectures" in profile:
        return list(profile["architectures"])
    arch_map = profile.get("archMap", {})
    archs = list(arch_map.get(os.uname().machine, []))
    if "SCMP_ARCH_X32" in archs and not kernel_runs_x32():
        archs.remove("SCMP_ARCH_X32")
    return archs


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
        # the file beside this module (kiln is installed as files, never run from a zip):
        # importlib.resources would cost every RUN's start-up ~5-10 ms of CPU to import
        with open(os.path.join(os.path.dirname(__file__), DEFAULT_PROFILE), encoding="utf-8") as f:
            text = f.read()
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
