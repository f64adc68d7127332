"""The CLI's verbs resolve without listing the command package, to what the listing says."""

from __future__ import annotations

import click
import pytest

from kiln.cli.lazy import LazyGroup
from kiln.cli.main import cli

GROUPS = ["kiln.cli.commands", "kiln.cli.commands.system", "kiln.cli.commands.image",
          "kiln.cli.commands.manifest", "kiln.cli.commands.builder"]  # fmt: skip


@pytest.mark.parametrize("package", GROUPS)
def test_every_listed_verb_resolves_directly_to_the_same_target(package):
    listed = LazyGroup(name="x", package=package).command_table()
    assert listed  # the package has verbs
    for verb, target in listed.items():
        fresh = LazyGroup(name="x", package=package)
        assert fresh._direct(verb) == target, verb
        assert fresh._table is None  # found without listing the package


@pytest.mark.parametrize("name", ["_build_history", "import_", "import-", "Build", "no-such-verb",
                                  "build_", "-", "", "../main"])  # fmt: skip
def test_what_is_not_a_verb_is_not_found_either_way(name):
    group = LazyGroup(name="x", package="kiln.cli.commands")
    assert group._direct(name) is None
    assert group.get_command(click.Context(group), name) is None


def test_an_alias_and_a_verb_with_a_trailing_underscore_module_still_run():
    ctx = click.Context(cli)
    assert cli.get_command(ctx, "import").name == "import"
    assert cli.get_command(ctx, "serve") is not None  # an alias to kiln.cli.serve
