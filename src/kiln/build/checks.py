"""Build checks: BuildKit's Dockerfile lint rules (``kiln build --check``).

``run_checks(parsed, ...) -> CheckReport`` reads a parsed Dockerfile (nothing is built, no
image is pulled) and returns one ``CheckWarning(rule, message, line)`` per finding, in line
order. Rule names and messages are BuildKit's, so the documentation of
``docker build --check`` applies (the README has a paragraph per rule). The
``# check=skip=Rule1,Rule2`` directive (``skip=all``) turns rules off;
``# check=error=true`` makes any finding fail the build (``CheckReport.error``).

``UndefinedVar`` needs to know what the base image defines: ``base_env(name)`` returns the
environment names of an image the store already holds (None when unknown: the rule is not
applied to that stage rather than guessing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import field

from kiln.build.args import PROXY_ARGS, platform_args
from kiln.build.dockerignore import IgnoreMatcher
from kiln.build.lexer import ShellLex
from kiln.build.parser import Node, ParsedDockerfile
from kiln.errors import InvalidArgument, KilnError
from kiln.oci import Reference
from kiln.util.lazy_dataclass import dataclass
from kiln.util.lazy_pattern import lazy_pattern

__all__ = ["RULES", "CheckReport", "CheckWarning", "run_checks"]

RULES: dict[str, str] = {
    "StageNameCasing": "Stage names should be lowercase",
    "FromAsCasing": "The 'as' keyword should match the case of the 'from' keyword",
    "ConsistentInstructionCasing": "All commands within the Dockerfile should use the same "
    "casing (either upper or lower)",
    "DuplicateStageName": "Stage names should be unique",
    "ReservedStageName": "Reserved words should not be used as stage names",
    "JSONArgsRecommended": "JSON arguments recommended for ENTRYPOINT/CMD to prevent "
    "unintended behavior related to OS signals",
    "MaintainerDeprecated": "The MAINTAINER instruction is deprecated, use a label instead to "
    "define an image author",
    "UndefinedArgInFrom": "FROM command must use declared ARGs",
    "WorkdirRelativePath": "Relative workdir without an absolute workdir declared within the "
    "build can have unexpected results if the base image changes",
    "UndefinedVar": "Variables should be defined before their use",
    "MultipleInstructionsDisallowed": "Multiple instructions of the same type should not be "
    "used in the same stage",
    "LegacyKeyValueFormat": "Legacy key/value format with whitespace separator should not be used",
    "RedundantTargetPlatform": "Setting platform to predefined $TARGETPLATFORM in FROM is "
    "redundant as this is the default behavior",
    "SecretsUsedInArgOrEnv": "Sensitive data should not be used in the ARG or ENV commands",
    "InvalidDefaultArgInFrom": "Default value for global ARG results in an empty or invalid "
    "base image name",
    "FromPlatformFlagConstDisallowed": "FROM --platform flag should not use a constant value",
    "CopyIgnoredFile": "Attempting to Copy file that is excluded by .dockerignore",
}

_RESERVED_STAGES = ("context", "scratch")
_SECRET = lazy_pattern(
    r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)"
    r"(?:_|$)"
)
_PUBLIC = lazy_pattern(r"(?i)(?:_|^)public(?:_|$)")
_ONCE = ("CMD", "ENTRYPOINT", "HEALTHCHECK")
# instructions whose words the Dockerfile expands (RUN, CMD, ENTRYPOINT, SHELL are the shell's)
_EXPANDED = ("ADD", "COPY", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


@dataclass(frozen=True)
class CheckWarning:
    """One Dockerfile check's warning."""

    rule: str
    message: str
    line: int

    def __str__(self) -> str:
        return f"{self.rule} - {self.message} (line {self.line})"


@dataclass
class CheckReport:
    """The warnings of a Dockerfile's checks."""

    warnings: list[CheckWarning] = field(default_factory=list)
    skipped: frozenset[str] = frozenset()
    error: bool = False  # ``# check=error=true`` and at least one warning


def _directive(value: str) -> tuple[frozenset[str], bool]:
    """``skip=A,B;error=true`` -> (skipped rules, error)."""
    skip: set[str] = set()
    error = False
    for part in value.split(";"):
        key, _, val = part.partition("=")
        key, val = key.strip().lower(), val.strip()
        if key == "skip":
            skip |= {"all"} if val.lower() == "all" else {v.strip() for v in val.split(",") if v}
        elif key == "error":
            if val.lower() not in ("true", "false"):
                raise InvalidArgument(f"# check=error={val}: use true or false")
            error = val.lower() == "true"
        elif key:
            raise InvalidArgument(f"# check={value}: unknown option {key!r} (skip, error)")
    return frozenset(skip), error


class _Checker:
    def __init__(self, parsed: ParsedDockerfile, build_args: dict[str, str],
                 ignore: IgnoreMatcher | None,
                 base_env: Callable[[str], Iterable[str] | None] | None) -> None:  # fmt: skip
        self.parsed = parsed
        self.lex = ShellLex(parsed.escape)
        self.build_args = build_args
        self.ignore = ignore
        self.base_env = base_env
        self.found: list[CheckWarning] = []

    def warn(self, rule: str, message: str, line: int) -> None:
        self.found.append(CheckWarning(rule, message, line))

    def run(self) -> list[CheckWarning]:
        nodes = self.parsed.nodes
        self._casing(nodes)
        predefined = set(platform_args("linux/amd64", "linux/amd64")) | PROXY_ARGS
        global_args: dict[str, str] = {}
        stage_defined: dict[str, set[str] | None] = {}
        names: dict[str, int] = {}
        stage: list[Node] = []
        for node in nodes:
            if node.instruction == "FROM":
                if stage:
                    self._stage(stage, global_args, predefined, stage_defined)
                stage = [node]
                self._from(node, global_args, predefined, names)
            elif stage:
                stage.append(node)
            elif node.instruction == "ARG":
                for word in node.args:
                    self._secret("ARG", word.partition("=")[0], node.line)
                    self._global_arg(word, global_args)
        if stage:
            self._stage(stage, global_args, predefined, stage_defined)
        return sorted(self.found, key=lambda w: w.line)

    def _global_arg(self, word: str, global_args: dict[str, str]) -> None:
        """A global ARG's value as BuildKit takes it for these checks: a --build-arg, else its
        default expanded with the args before it (the automatic platform args among them),
        else, declared without a default, the automatic value of a platform arg (``ARG
        TARGETARCH`` keeps amd64 on linux/amd64), else empty."""
        key, eq, value = word.partition("=")
        automatic = platform_args("linux/amd64", "linux/amd64")
        if key in self.build_args:
            global_args[key] = self.build_args[key]
        elif eq:
            try:
                global_args[key] = self.lex.expand(value, {**automatic, **global_args}).value
            except KilnError:
                global_args[key] = value
        else:
            global_args[key] = global_args.get(key, automatic.get(key, ""))

    # -- rules over the whole file ----------------------------------------------------

    def _casing(self, nodes: list[Node]) -> None:
        words = [(n, (n.original.split() or [n.instruction])[0]) for n in nodes]
        upper = sum(1 for _, w in words if w.isupper())
        lower = sum(1 for _, w in words if w.islower())
        majority = "uppercase" if upper >= lower else "lowercase"
        for node, word in words:
            if (majority == "uppercase" and not word.isupper()) or (
                majority == "lowercase" and not word.islower()
            ):
                self.warn("ConsistentInstructionCasing",
                          f"Command '{word}' should match the case of the command majority "
                          f"({majority})", node.line)  # fmt: skip

    # -- FROM -------------------------------------------------------------------------

    def _from(self, node: Node, global_args: dict[str, str], predefined: set[str],
              names: dict[str, int]) -> None:  # fmt: skip
        words = node.original.split()
        if len(node.args) >= 3 and node.args[1].lower() == "as":
            name = node.args[2]
            from_kw = words[0]
            as_kw = next((w for w in words[1:] if w.lower() == "as"), node.args[1])
            if (from_kw.isupper() and not as_kw.isupper()) or (
                from_kw.islower() and not as_kw.islower()
            ):
                self.warn("FromAsCasing",
                          f"'{as_kw}' and '{from_kw}' keywords' casing do not match", node.line)  # fmt: skip
            if name != name.lower():
                self.warn("StageNameCasing", f"Stage name '{name}' should be lowercase", node.line)
            if name.lower() in _RESERVED_STAGES:
                self.warn("ReservedStageName", "Stage name should not use the same name as "
                          f'reserved stage "{name.lower()}"', node.line)  # fmt: skip
            if name.lower() in names:
                self.warn("DuplicateStageName",
                          f'Duplicate stage name "{name.lower()}", stage names should be unique',
                          node.line)  # fmt: skip
            names[name.lower()] = node.line
        env = {**{k: "x" for k in predefined}, **global_args}
        base = node.args[0] if node.args else ""
        exp = self.lex.expand(base, env)
        for missing in sorted(exp.missing):
            self.warn("UndefinedArgInFrom", f"FROM argument '{missing}' is not declared",
                      node.line)  # fmt: skip
        if "$" in base and not exp.missing:
            real = self.lex.expand(base, {**platform_args("linux/amd64", "linux/amd64"),
                                          **global_args}).value  # fmt: skip
            if not _valid_base(real):
                self.warn("InvalidDefaultArgInFrom", f"Default value for ARG {base} results in "
                          "empty or invalid base image name", node.line)  # fmt: skip
        platform = _flag(node, "platform")
        if platform is not None:
            if platform.strip() in ("$TARGETPLATFORM", "${TARGETPLATFORM}"):
                self.warn("RedundantTargetPlatform", "Setting platform to predefined "
                          f"{platform.strip()} in FROM is redundant as this is the default "
                          "behavior", node.line)  # fmt: skip
            elif "$" not in platform:
                self.warn("FromPlatformFlagConstDisallowed",
                          f'FROM --platform flag should not use constant value "{platform}"',
                          node.line)  # fmt: skip

    # -- one stage --------------------------------------------------------------------

    def _stage(self, nodes: list[Node], global_args: dict[str, str], predefined: set[str],
               stage_defined: dict[str, set[str] | None]) -> None:  # fmt: skip
        head = nodes[0]
        base = head.args[0] if head.args else ""
        defined: set[str] | None
        if base.lower() in stage_defined:
            known = stage_defined[base.lower()]
            defined = set(known) if known is not None else None
        elif base == "scratch":
            defined = {"PATH"}
        elif self.base_env is not None:
            try:
                name = self.lex.expand(base, global_args).value
            except KilnError:
                name = ""
            env = self.base_env(name) if name and "$" not in name else None
            defined = set(env) if env is not None else None
        else:
            defined = None
        counts: dict[str, list[int]] = {}
        absolute_workdir = False
        for node in nodes[1:]:
            kw = node.instruction
            if kw in _ONCE:
                counts.setdefault(kw, []).append(node.line)
            if kw in ("CMD", "ENTRYPOINT") and not node.json_form:
                self.warn("JSONArgsRecommended", f"JSON arguments recommended for {kw} to "
                          "prevent unintended behavior related to OS signals", node.line)  # fmt: skip
            elif kw == "MAINTAINER":
                self.warn("MaintainerDeprecated",
                          "Maintainer instruction is deprecated in favor of using label",
                          node.line)  # fmt: skip
            elif kw == "WORKDIR" and node.args:
                path = node.args[0]
                if path.startswith("/") or path.startswith("$"):
                    absolute_workdir = True
                elif not absolute_workdir:
                    self.warn("WorkdirRelativePath", f'Relative workdir "{path}" can have '
                              "unexpected results if the base image changes", node.line)  # fmt: skip
            if kw in ("ENV", "LABEL") and _legacy_pairs(node):
                self.warn("LegacyKeyValueFormat", f'"{kw} key=value" should be used instead of '
                          f'legacy "{kw} key value" format', node.line)  # fmt: skip
            if kw in ("COPY", "ADD"):
                self._copy_ignored(node)
            if defined is not None and kw in _EXPANDED:
                self._undefined(node, defined | predefined | set(global_args))
            if kw == "ENV":
                for key in _env_keys(node):
                    self._secret("ENV", key, node.line)
                    if defined is not None:
                        defined.add(key)
            elif kw == "ARG":
                for word in node.args:
                    key = word.partition("=")[0]
                    self._secret("ARG", key, node.line)
                    if defined is not None:
                        defined.add(key)
        for kw, lines in counts.items():
            for line in lines[:-1]:
                self.warn("MultipleInstructionsDisallowed", f"Multiple {kw} instructions should "
                          "not be used in the same stage because only the last one will be used",
                          line)  # fmt: skip
        if len(head.args) >= 3 and head.args[1].lower() == "as":
            stage_defined[head.args[2].lower()] = defined

    def _secret(self, instruction: str, key: str, line: int) -> None:
        if _SECRET().search(key) and not _PUBLIC().search(key):
            self.warn("SecretsUsedInArgOrEnv", "Do not use ARG or ENV instructions for sensitive "
                      f'data ({instruction} "{key}")', line)  # fmt: skip

    def _undefined(self, node: Node, defined: set[str]) -> None:
        env = dict.fromkeys(defined, "")
        words = list(node.args)
        if node.instruction in ("ENV", "LABEL"):
            words = list(node.args[1::2])
        reported: set[str] = set()
        for word in words:
            try:
                missing = self.lex.expand(word, env).missing
            except KilnError:
                continue
            for name in sorted(missing - reported):
                reported.add(name)
                self.warn("UndefinedVar", f"Usage of undefined variable '${name}'", node.line)
        if node.instruction == "ENV":  # a later pair may use an earlier one
            for key in node.args[0::2]:
                defined.add(key)

    def _copy_ignored(self, node: Node) -> None:
        if self.ignore is None or not self.ignore.patterns or _flag(node, "from") is not None:
            return
        if self.ignore.has_exclusions:
            return  # exclusions make this too hard to tell statically (as BuildKit)
        for src in node.args[:-1]:
            if "://" in src or "$" in src:
                continue
            rel = src.lstrip("/")
            while rel.startswith("./"):
                rel = rel[2:]
            if rel and rel != "." and self.ignore.matches(rel):
                self.warn("CopyIgnoredFile", f"Attempting to {node.instruction.capitalize()} "
                          f'file "{src}" that is excluded by .dockerignore', node.line)  # fmt: skip


def _flag(node: Node, name: str) -> str | None:
    for flag in node.flags:
        key, _, value = flag.lstrip("-").partition("=")
        if key == name:
            return value
    return None


def _legacy_pairs(node: Node) -> bool:
    """``ENV key value`` (one pair, separated by whitespace) rather than ``key=value``."""
    text = node.original.split(None, 1)
    if len(text) < 2:
        return False
    rest = text[1].lstrip()
    for flag in node.flags:
        rest = rest.removeprefix(flag).lstrip()
    first = re.split(r"\s", rest, maxsplit=1)[0]
    return "=" not in first


def _env_keys(node: Node) -> list[str]:
    return list(node.args[0::2])


def _valid_base(name: str) -> bool:
    if name == "scratch":
        return True
    try:
        Reference.parse(name)
    except (KilnError, ValueError):
        return False
    return True


def run_checks(
    parsed: ParsedDockerfile,
    *,
    build_args: dict[str, str] | None = None,
    ignore_patterns: Iterable[str] = (),
    base_env: Callable[[str], Iterable[str] | None] | None = None,
) -> CheckReport:
    """Run every rule not skipped by ``# check=`` (see the module docstring)."""
    skip, error = _directive(parsed.directives.get("check", ""))
    patterns = list(ignore_patterns)
    ignore = IgnoreMatcher(patterns) if patterns else None
    found = _Checker(parsed, dict(build_args or {}), ignore, base_env).run()
    if "all" in skip:
        found = []
    found = [w for w in found if w.rule not in skip]
    return CheckReport(warnings=found, skipped=skip, error=error and bool(found))
