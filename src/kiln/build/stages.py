"""The stage plan: which stages a build needs, in which order, and what each waits for.

Stages form a graph: ``FROM <earlier stage>``, ``COPY --from=<name|index>`` and
``RUN --mount=...,from=<name|index>`` are edges.  Only the stages the target
needs are planned; ``order`` is a topological order and ``deps`` lets an
executor run independent stages in parallel.  A ``--from`` that names no
stage is an image, recorded in ``Stage.external_images``.

FROM names only an earlier stage (a later stage's name there is an image, as in
buildah and BuildKit). ``--from`` names an earlier stage by index or name; naming this
or a later stage is refused ("refers to current or future build stage") when the stage
is built: buildah fails there ("no stage or image found with that name") and BuildKit
20.10 copies from the later stage's base without its steps, so neither builds what was
meant; a stage the target does not need is not built by either, whatever it names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import field

from kiln.build.args import BuildArgs, StageArgs
from kiln.build.instructions import (
    Arg,
    Copy,
    Env,
    From,
    Instruction,
    Run,
    instructions_from_nodes,
)
from kiln.build.lexer import ShellLex
from kiln.build.parser import ParsedDockerfile
from kiln.errors import InvalidArgument
from kiln.util.lazy_dataclass import dataclass

__all__ = ["BuildPlan", "Stage", "plan"]


@dataclass(frozen=True)
class Stage:
    """One FROM stage of a Dockerfile."""

    index: int
    name: str | None
    base: str  # as written in FROM
    base_expanded: str  # after expansion with the global args
    platform: str | None  # expanded FROM --platform, if any
    instructions: tuple[Instruction, ...]  # after the FROM
    line: int
    from_instruction: From
    base_stage: int | None = None  # index of the stage this one is FROM
    stage_deps: frozenset[int] = frozenset()  # every stage it needs (FROM and --from)
    external_images: frozenset[str] = frozenset()  # COPY --from / mount from= images
    base_used_args: frozenset[str] = frozenset()
    refused: str | None = None  # a --from naming this or a later stage: refused if built

    @property
    def is_scratch(self) -> bool:
        return self.base_stage is None and self.base_expanded.lower() == "scratch"


@dataclass(frozen=True)
class BuildPlan:
    """The stages of a Dockerfile and the order to build them in."""

    stages: tuple[Stage, ...]  # every stage in the Dockerfile
    target_index: int
    order: tuple[int, ...]  # stages to build, dependencies first
    deps: dict[int, frozenset[int]]  # for each stage in ``order``
    global_args: tuple[Arg, ...] = ()
    directives: Mapping[str, str] = field(default_factory=dict)

    @property
    def target(self) -> Stage:
        return self.stages[self.target_index]

    def stage_named_from(self, index: int) -> Stage | None:
        """The stage, at or after stage ``index``, named as ``index``'s FROM image (FROM
        names only earlier stages: ``FROM b AS a`` ... ``FROM a AS b`` reads image ``b``)."""
        base = self.stages[index]
        if base.base_stage is not None:
            return None
        name = base.base_expanded.lower()
        return next((s for s in self.stages[index:] if (s.name or "").lower() == name), None)

    def levels(self) -> list[list[int]]:
        """Batches of stages that can run in parallel, in order."""
        done: set[int] = set()
        remaining = list(self.order)
        batches: list[list[int]] = []
        while remaining:
            ready = [i for i in remaining if self.deps[i] <= done]
            batches.append(ready)
            done.update(ready)
            remaining = [i for i in remaining if i not in done]
        return batches


def _split(instructions: list[Instruction], name: str) -> tuple[list[Arg], list[list[Instruction]]]:
    global_args: list[Arg] = []
    groups: list[list[Instruction]] = []
    for instr in instructions:
        if isinstance(instr, From):
            groups.append([instr])
        elif groups:
            groups[-1].append(instr)
        elif isinstance(instr, Arg):
            global_args.append(instr)
        else:
            raise InvalidArgument(f"{name}:{instr.line}: no build stage in current context")
    if not groups:
        raise InvalidArgument(f"{name}: the Dockerfile has no FROM instruction (no stage to build)")
    return global_args, groups


@contextlib.contextmanager
def _at_line(name: str, line: int) -> Iterator[None]:
    """Prefix an expansion error (``${V:?msg}``) with ``Containerfile:N:``."""
    try:
        yield
    except InvalidArgument as exc:
        if str(exc).startswith(f"{name}:"):
            raise
        raise InvalidArgument(f"{name}:{line}: {exc}") from None


def _from_refs(
    body: list[Instruction], args: BuildArgs, lex: ShellLex, name: str
) -> list[tuple[str, int]]:
    """Expanded ``--from`` values of COPY and RUN mounts, simulating the stage's ARG/ENV."""
    consumed = set(args.consumed)  # planning must not count as consuming --build-args
    try:
        return _simulate(body, args, lex, name)
    finally:
        args.consumed.clear()
        args.consumed.update(consumed)


def _simulate(
    body: list[Instruction], args: BuildArgs, lex: ShellLex, name: str
) -> list[tuple[str, int]]:
    scope = args.stage()
    env: dict[str, str] = {}
    refs: list[tuple[str, int]] = []
    for instr in body:
        with _at_line(name, instr.line):
            _simulate_one(instr, scope, lex, env, refs)
    return refs


def _simulate_one(
    instr: Instruction, scope: StageArgs, lex: ShellLex, env: dict[str, str],
    refs: list[tuple[str, int]],
) -> None:  # fmt: skip
    if isinstance(instr, Arg):
        scope.apply(instr, lex, env)
    elif isinstance(instr, Env):
        expanded, _ = instr.expand(lex, scope.env(env))
        env.update(dict(expanded.pairs))
    elif isinstance(instr, Copy) and instr.from_:
        refs.append((lex.process_word(instr.from_, scope.env(env)), instr.line))
    elif isinstance(instr, Run) and instr.mount_specs:
        expanded_run, _ = instr.expand(lex, scope.env(env))
        for mount in expanded_run.mounts:
            if mount.from_:
                refs.append((mount.from_, instr.line))


def _resolve(ref: str, names: dict[str, int], count: int, current: int) -> int | None:
    """The stage the ``--from`` ``ref`` of stage ``current`` names (None: an image); an
    index names only an earlier stage, a name may be a later stage's (``plan`` refuses
    that when the stage is built: see the module docstring)."""
    if ref.isdigit():
        index = int(ref)
        if index >= count:
            raise InvalidArgument(f"invalid from flag value {ref}: index out of bounds")
        if index > current:
            raise InvalidArgument(
                f"invalid from flag value {ref}: refers to current or future build stage"
            )
        return index
    return names.get(ref.lower())


def plan(
    parsed: ParsedDockerfile,
    build_args: BuildArgs,
    target: str | None = None,
    *,
    lex: ShellLex | None = None,
    named: Collection[str] = (),
) -> BuildPlan:
    """Plan the build of ``target`` (default: the last stage).

    Global ARGs are applied to ``build_args`` (so the executor shares the state).
    ``named``: the names of ``--build-context``s, which win over stages and images.
    """
    lex = lex or ShellLex(parsed.escape)
    instructions = instructions_from_nodes(parsed.nodes, parsed.name)
    global_args, groups = _split(instructions, parsed.name)
    for arg in global_args:
        with _at_line(parsed.name, arg.line):
            build_args.apply_global(arg, lex)

    names: dict[str, int] = {}
    for index, group in enumerate(groups):
        head = group[0]
        assert isinstance(head, From)
        if head.stage_name:
            if head.stage_name in names:
                raise InvalidArgument(
                    f'{parsed.name}:{head.line}: duplicate stage name "{head.stage_name}", '
                    "stage names must be unique"
                )
            names[head.stage_name] = index

    stages: list[Stage] = []
    for index, group in enumerate(groups):
        head = group[0]
        assert isinstance(head, From)
        with _at_line(parsed.name, head.line):
            expanded, used = head.expand(lex, build_args.for_from())
        assert isinstance(expanded, From)
        base_stage = None if expanded.base in named else names.get(expanded.base.lower())
        if base_stage is None and expanded.base.isdigit() and expanded.base not in named:
            base_stage = int(expanded.base)  # FROM 0: an earlier stage by index, as buildah
        if base_stage is not None and base_stage >= index:
            base_stage = None  # FROM x AS x, or a later stage's name: the image x
        deps: set[int] = {base_stage} if base_stage is not None else set()
        images: set[str] = set()
        refused: str | None = None
        for ref, line in _from_refs(group[1:], build_args, lex, parsed.name):
            if ref in named:
                continue  # a named context: neither a stage nor an image to pull
            try:
                dep = _resolve(ref, names, len(groups), index)
            except InvalidArgument as exc:
                raise InvalidArgument(f"{parsed.name}:{line}: {exc}") from None
            if dep == index and ref.isdigit():
                raise InvalidArgument(f"{parsed.name}:{line}: a stage cannot copy from itself")
            if dep is not None and dep >= index:
                refused = refused or (
                    f"{parsed.name}:{line}: invalid from flag value {ref}: refers to current "
                    "or future build stage"
                )
            elif dep is None:
                images.add(ref)
            else:
                deps.add(dep)
        stages.append(
            Stage(
                index=index, name=head.stage_name, base=head.base,
                base_expanded=expanded.base, platform=expanded.platform,
                instructions=tuple(group[1:]), line=head.line, from_instruction=head,
                base_stage=base_stage, stage_deps=frozenset(deps),
                external_images=frozenset(images), base_used_args=frozenset(used),
                refused=refused,
            )
        )  # fmt: skip

    target_index = len(stages) - 1
    if target is not None:
        if target.lower() not in names:
            raise InvalidArgument(f'target stage "{target}" could not be found')
        target_index = names[target.lower()]
    order = _topological(stages, target_index)
    for index in order:  # only a stage the target needs: an unused one may name anything
        refusal = stages[index].refused
        if refusal is not None:
            raise InvalidArgument(refusal)
    return BuildPlan(
        stages=tuple(stages),
        target_index=target_index,
        order=tuple(order),
        deps={i: stages[i].stage_deps for i in order},
        global_args=tuple(global_args),
        directives=dict(parsed.directives),
    )


def _topological(stages: list[Stage], target: int) -> list[int]:
    """The stages ``target`` needs, dependencies first; a circle is refused with BuildKit's
    message and the circle itself ("... on stage: two (two -> one -> two)")."""
    order: list[int] = []
    state: dict[int, str] = {}
    path: list[int] = []  # the stages being visited, outermost first

    def label(index: int) -> str:
        return stages[index].name or str(index)

    def visit(index: int) -> None:
        if state.get(index) == "done":
            return
        if state.get(index) == "active":
            circle = " -> ".join(map(label, [*path[path.index(index) :], index]))
            raise InvalidArgument(
                f"circular dependency detected on stage: {label(index)} ({circle})"
            )
        state[index] = "active"
        path.append(index)
        for dep in sorted(stages[index].stage_deps):
            visit(dep)
        path.pop()
        state[index] = "done"
        order.append(index)

    visit(target)
    return order
