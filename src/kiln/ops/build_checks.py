"""``kiln build --check`` and the checks a build runs first (``kiln.build.checks``,
BuildKit's Dockerfile rules): findings are warnings, and with ``# check=error=true`` any
finding fails the build before anything runs."""

from __future__ import annotations

from typing import Any

from kiln.build.checks import CheckReport, run_checks
from kiln.build.dockerignore import load_ignore_file
from kiln.build.options import BuildOptions
from kiln.build.parser import parse_string
from kiln.errors import InvalidArgument, KilnError, NotFound
from kiln.image import open_store_image
from kiln.ops.build_inputs import containerfile, context_dir
from kiln.ops.context import Context

__all__ = ["check", "run_build_checks"]


def check(ctx: Context, opts: BuildOptions) -> CheckReport:
    """``kiln build --check``: the build checks' findings, building nothing."""
    with context_dir(ctx, opts) as root:
        paths, text, name = containerfile(root, opts)
        parsed = parse_string(text, name=name)
        patterns = load_ignore_file(root, paths[0] if paths else None)
        return run_build_checks(ctx, opts, parsed, patterns, fail=False)


def run_build_checks(
    ctx: Context, opts: BuildOptions, parsed: Any, patterns: list[str], fail: bool = True
) -> CheckReport:
    """Run the checks; with ``# check=error=true`` a finding fails the build (``fail``)."""

    def base_env(name: str) -> list[str] | None:
        try:
            env = open_store_image(ctx.store, name).config.config.env
        except (NotFound, InvalidArgument):
            return None
        return [item.partition("=")[0] for item in env]

    try:
        report = run_checks(parsed, build_args=opts.build_args, ignore_patterns=patterns,
                            base_env=base_env)  # fmt: skip
    except KilnError:
        raise  # a bad # check= directive: the user's to fix
    except Exception:  # a lint bug never stops a build
        import logging  # here: a build whose checks pass imports no logging

        logging.getLogger(__name__).warning("the build checks failed", exc_info=True)
        return CheckReport()
    if fail and report.error:
        listed = "; ".join(str(w) for w in report.warnings)
        raise InvalidArgument(
            f"the build checks failed (# check=error=true): {listed}; fix them or skip the "
            "rules with # check=skip=RULE"
        )
    return report
