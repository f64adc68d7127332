"""Why a step missed the build cache, in one line (``kiln build --explain``).

Every key a build makes is remembered with what went into it
(``kiln.build.cache_key.step_inputs`` plus, for context files, which paths with which
mode and content: ``BuildContext.manifest``) in the store's bounded ``cache_inputs``
table. A step whose key matches no cache entry is compared with the nearest earlier
entry, chosen in this order (newest first in each):

1. the same parent and the same step of the same Dockerfile (its ``locator``);
2. the same parent and the same instruction;
3. the same step of the same Dockerfile with the same instruction, any parent;
4. the same step of the same Dockerfile, any parent;
5. the same instruction, any parent;
6. the same parent and the same kind of instruction (another RUN after the same step).

The differences become the reason: the base image, an earlier step, the instruction
text, build args (old -> new), context files (changed, added, removed, by name) and their
modes, ``--from`` images, build settings. Nothing earlier: "no earlier build of this step".
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kiln.util.lazy_dataclass import dataclass

if TYPE_CHECKING:
    from kiln.build.instructions import Instruction

__all__ = [
    "StepFacts",
    "compare_inputs",
    "explain_miss",
    "first_change_text",
    "is_new_key",
    "locator",
    "miss_reason",
    "pick_earlier",
    "remember_inputs",
    "trim_inputs",
]

_NAMES_SHOWN = 2


# -- what a stage records and reports (called by kiln.build.stage_run) -----------------


@dataclass(frozen=True)
class StepFacts:
    """A step as the cache records it: where it is, what went into its key (``inputs``:
    ``kiln.build.cache_key.step_inputs``), its stage's base, its instruction (None: the
    stage's final commit) and ``manifest`` (a context digest -> its file listing)."""

    locator: str
    inputs: Mapping[str, Any]
    base_id: str | None
    instr: Instruction | None
    manifest: Callable[[str], Any]

    @property
    def name(self) -> str:
        return self.instr.name if self.instr is not None else "COMMIT"

    @property
    def text(self) -> str:
        return self.instr.original if self.instr is not None else "COMMIT"


def locator(context_root: str, dockerfile_name: str, stage: str, step_n: int) -> str:
    """Names a step of this Dockerfile in this context (``stage``: its name or index),
    across builds."""
    where = "\0".join((context_root, dockerfile_name, stage, str(step_n)))
    return hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def recorded_inputs(step: StepFacts) -> dict[str, Any]:
    """The step's key inputs plus its base, its text and the files it read, by name."""
    inputs = dict(step.inputs)
    inputs["base"] = step.base_id or ""
    inputs["text"] = step.text
    manifests = {}
    for name, digest in inputs.get("files", {}).items():
        listed = step.manifest(digest)
        if listed is not None:
            manifests[name] = listed
    inputs["manifests"] = manifests
    return inputs


def remember_inputs(store: Any, key: str, step: StepFacts) -> None:
    """Keep what went into ``key`` for a later --explain (never fails the build); the
    bounds on what is kept are applied once, at the build's end (``trim_inputs``)."""
    with contextlib.suppress(Exception):
        store.put_cache_inputs(key, step.locator, step.name, recorded_inputs(step), trim=False)


def packed_inputs(store: Any, key: str, step: StepFacts) -> Any:
    """What ``remember_packed`` will keep for ``key``, made before the step's write
    transaction (building and compressing the file lists can take a while); None when it
    cannot be made (an explanation never fails a build)."""
    try:
        return store.pack_cache_inputs(key, step.locator, step.name, recorded_inputs(step))
    except Exception:
        return None


def remember_packed(store: Any, packed: Any) -> None:
    """``remember_inputs`` for a row ``packed_inputs`` made (nothing if it made none)."""
    if packed is not None:
        with contextlib.suppress(Exception):
            store.put_packed_cache_inputs(packed, trim=False)


def trim_inputs(store: Any) -> None:
    """At a build's end: drop the oldest inputs past the store's bounds, if the build put
    any (never fails it)."""
    with contextlib.suppress(Exception):
        store.trim_cache_inputs(if_put=True)


def is_new_key(store: Any, key: str) -> bool:
    """Whether no build recorded ``key`` before (False when that cannot be told)."""
    try:
        return not store.has_cache_inputs(key)
    except Exception:
        return False


def miss_reason(
    store: Any,
    key: str,
    step: StepFacts,
    *,
    layers: bool,
    no_cache: bool,
    earlier_change: str | None,
) -> str:
    """Why a RUN/COPY/ADD missed the cache, in one line (never fails the build)."""
    if not layers:
        return "steps are not cached (--layers=false)"
    if no_cache:
        return "--no-cache"
    try:
        return explain_miss(
            store, key, step.locator, recorded_inputs(step), instruction=step.name,
            earlier_change=earlier_change,
        )  # fmt: skip
    except Exception as exc:  # an explanation never fails a build
        return f"unknown ({type(exc).__name__})"


def first_change_text(step: StepFacts) -> str:
    """How a step that changed first is named in later reasons."""
    return _cut(step.text, 40)


# -- the reason ---------------------------------------------------------------------


def explain_miss(
    store: Any,
    key: str,
    locator: str,
    inputs: Mapping[str, Any],
    *,
    instruction: str,
    earlier_change: str | None = None,
) -> str:
    """The reason ``key`` (whose ``inputs`` are given) matched no cache entry."""
    if store.has_cache_inputs(key):
        return "the cached image of this step was removed (rmi or prune)"
    parent = str(inputs.get("parent", ""))
    # the candidates' inputs are not read: only the one picked is (each is a compressed
    # blob, with a COPY's file lists up to 128 KiB, and up to 64 are candidates)
    candidates = store.cache_inputs_candidates(
        key, locator, parent, dict(inputs.get("instruction", {})), with_inputs=False
    )
    tried: set[str] = set()
    for cand in _ranked(candidates, locator, parent, instruction):
        if cand["key"] in tried:
            continue
        tried.add(cand["key"])
        old = store.get_cache_inputs(cand["key"])
        if old is not None:
            return compare_inputs(old, inputs, earlier_change=earlier_change)
    return "no earlier build of this step"


def pick_earlier(
    candidates: list[dict[str, Any]], locator: str, parent: str, instruction: str
) -> dict[str, Any] | None:
    """The nearest earlier entry's inputs (see the module docstring for the order)."""
    for cand in _ranked(candidates, locator, parent, instruction):
        return dict(cand["inputs"])
    return None


def _ranked(
    candidates: list[dict[str, Any]], locator: str, parent: str, instruction: str
) -> Iterator[dict[str, Any]]:
    """The candidates that may explain a miss, nearest first (a candidate may come again)."""
    tests = (
        lambda c: c["parent"] == parent and c["locator"] == locator,
        lambda c: c["parent"] == parent and c["same_instruction"],
        lambda c: c["locator"] == locator and c["same_instruction"],
        lambda c: c["locator"] == locator,
        lambda c: c["same_instruction"],
        lambda c: c["parent"] == parent and c["instruction"] == instruction,
    )
    for test in tests:
        for cand in candidates:  # newest first
            if test(cand):
                yield cand


def compare_inputs(
    old: Mapping[str, Any], new: Mapping[str, Any], *, earlier_change: str | None = None
) -> str:
    """One line naming what differs between two steps' inputs."""
    reasons: list[str] = []
    args = _arg_changes(old.get("args", {}), new.get("args", {}))
    if old.get("parent") != new.get("parent"):
        if old.get("base") != new.get("base"):
            reasons.append(
                f"base image changed ({_short(old.get('base'))} -> {_short(new.get('base'))})"
            )
        elif earlier_change and not (args and earlier_change.startswith("ARG ")):
            reasons.append(f"an earlier step changed ({earlier_change})")
        elif not args:
            reasons.append("an earlier step changed")
    if old.get("instruction") != new.get("instruction"):
        was = str(old.get("text") or "")
        reasons.append("instruction text changed" + (f" (was: {_cut(was, 40)})" if was else ""))
    reasons += args
    reasons += _file_changes(old, new)
    for name in sorted(set(old.get("from", {})) | set(new.get("from", {}))):
        a, b = old.get("from", {}).get(name), new.get("from", {}).get(name)
        if a != b:
            reasons.append(f"--from={name} changed ({_short(a)} -> {_short(b)})")
    settings_old, settings_new = old.get("settings", {}), new.get("settings", {})
    for name in sorted(set(settings_old) | set(settings_new)):
        a, b = settings_old.get(name), settings_new.get(name)
        if a != b:
            reasons.append(f"build setting {name} changed ({a} -> {b})")
    if old.get("extra") != new.get("extra"):
        reasons.append("labels, annotations or squash changed")
    return "; ".join(reasons) if reasons else "its inputs changed"


def _arg_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        shown = name.removeprefix("arg:")
        if a is None:
            out.append(f"build arg {shown} set ({_cut(str(b), 30)})")
        elif b is None:
            out.append(f"build arg {shown} no longer used (was {_cut(str(a), 30)})")
        else:
            out.append(f"build arg {shown} changed ({_cut(a, 30)} -> {_cut(b, 30)})")
    return out


def _file_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    files_old, files_new = old.get("files", {}), new.get("files", {})
    for name in sorted(set(files_old) | set(files_new)):
        if files_old.get(name) == files_new.get(name):
            continue
        if name.startswith("url:"):
            out.append(f"the content at {_cut(name[4:], 50)} changed")
            continue
        a = (old.get("manifests") or {}).get(name)
        b = (new.get("manifests") or {}).get(name)
        if a is None or b is None:
            out.append("context files changed")
            continue
        out += _manifest_changes(a, b)
    return out


def _manifest_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    changed, modes, added, removed = [], [], [], []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        if a is None:
            added.append(path)
        elif b is None:
            removed.append(path)
        else:
            kind_a, mode_a, content_a = (a.split(" ", 2) + ["", ""])[:3]
            kind_b, mode_b, content_b = (b.split(" ", 2) + ["", ""])[:3]
            if kind_a == kind_b and content_a == content_b:
                modes.append(f"{path} {int(mode_a, 8):04o} -> {int(mode_b, 8):04o}")
            else:
                changed.append(path)
    out = []
    for count_what, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if paths:
            noun = "file" if len(paths) == 1 else "files"
            out.append(f"{len(paths)} {noun} {count_what} ({_listed(paths)})")
    if modes:
        out.append(f"file mode changed: {_listed(modes)}")
    return out or ["context files changed"]


def _listed(items: list[str]) -> str:
    shown = ", ".join(_cut(i, 40) for i in items[:_NAMES_SHOWN])
    return shown + (f", +{len(items) - _NAMES_SHOWN}" if len(items) > _NAMES_SHOWN else "")


def _short(value: Any) -> str:
    if not value:
        return "none"
    text = str(value)
    if text.startswith("sha256:"):
        return text[:19] + ".."
    return _cut(text, 30)


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."
