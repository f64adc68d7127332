"""What a new user meets first: help for every option, `kiln version`, shell completion,
`rmi -f` of a missing image, and a --root kiln cannot use."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from ops_image_factory import make_image

from kiln.cli.main import cli


def walk(cmd: click.Command, path: list[str], ctx: click.Context):
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but cannot load it"
            yield from walk(sub, [*path, name], click.Context(sub, parent=ctx, info_name=name))


def undocumented(root: click.Command) -> list[str]:
    """Every command without help, option without help text, and argument whose name its
    command's help never mentions (click arguments have no help of their own)."""
    missing = []
    for path, cmd, ctx in walk(root, ["kiln"], click.Context(root, info_name="kiln")):
        where = " ".join(path)
        text = cmd.help or ""
        if not (text or cmd.short_help):
            missing.append(f"{where}: no help")
        for param in cmd.params:
            if isinstance(param, click.Option):
                if not param.hidden and not (param.help or "").strip():
                    missing.append(f"{where} {'/'.join(param.opts)}: no help")
            elif isinstance(param, click.Argument):
                words = re.findall(r"[A-Z][A-Z0-9_]+", param.make_metavar(ctx))
                for word in words:
                    if word not in text and word.removesuffix("S") not in text:
                        missing.append(f"{where} {word}: argument not described in the help")
    return missing


def test_every_option_and_argument_of_every_command_has_help():
    assert undocumented(cli) == []


def test_the_walker_finds_what_has_no_help():
    @click.group("t", help="A group.")
    def group():
        pass

    @group.command("c", help="Do it to SRC.")
    @click.option("--a", help="documented")
    @click.option("--b")
    @click.option("--hidden", hidden=True)
    @click.argument("src")
    @click.argument("dest")
    def sub(a, b, hidden, src, dest):
        pass

    assert undocumented(group) == [
        "kiln c --b: no help",
        "kiln c DEST: argument not described in the help",
    ]


def test_version_text_json_and_template():
    res = CliRunner().invoke(cli, ["version"])
    assert res.exit_code == 0, res.output
    labels = [line.split(":")[0] for line in res.stdout.splitlines()]
    assert labels == ["Client", "Version", "API Version", "Python Version", "Built", "OS/Arch"]
    assert re.search(r"^API Version:\s+1\.\d+ \(libpod \d", res.stdout, re.M)
    assert re.search(r"^OS/Arch:\s+linux/\w+$", res.stdout, re.M)
    client = json.loads(CliRunner().invoke(cli, ["version", "--format", "json"]).stdout)["Client"]
    assert client["Version"] and client["PythonVersion"] == ".".join(map(str, sys.version_info[:3]))
    for template in ("{{.Client.Version}}", "{{.Version}}"):
        res = CliRunner().invoke(cli, ["version", "--format", template])
        assert res.stdout == client["Version"] + "\n"


def test_python_dash_m_kiln_is_the_kiln_command(tmp_path):
    env = dict(os.environ, KILN_ROOT=str(tmp_path / "root"))
    res = subprocess.run([sys.executable, "-m", "kiln", "version", "--format", "{{.Version}}"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (
        res.stdout.strip()
        == json.loads(CliRunner().invoke(cli, ["version", "--format", "json"]).stdout)["Client"][
            "Version"
        ]
    )
    bad = subprocess.run([sys.executable, "-m", "kiln", "nosuchverb"], capture_output=True,
                         text=True, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 125 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("Error: unrecognized command `kiln nosuchverb`\n"), bad.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell):
    res = CliRunner().invoke(cli, ["completion", shell])
    assert res.exit_code == 0, res.output
    assert "_KILN_COMPLETE" in res.stdout and f"{shell}_complete" in res.stdout


def test_completion_completes_verbs_and_options():
    """What the bash script asks kiln for when one presses TAB."""

    def complete(words: str, cword: int) -> list[str]:
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword),
               "_KILN_COMPLETE": "bash_complete"}  # fmt: skip
        out = subprocess.run([sys.executable, "-m", "kiln.cli.main"], env=env, timeout=60,
                             capture_output=True, text=True, check=True)  # fmt: skip
        return [line.split(",", 1)[1] for line in out.stdout.splitlines()]

    assert complete("kiln bu", 1) == ["bud", "build", "builder"]
    assert "--no-cache" in complete("kiln build --no-", 2)
    assert complete("kiln completion ", 2) == ["bash", "zsh", "fish"]


def test_unknown_shell_is_a_usage_error():
    res = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert res.exit_code == 125 and "tcsh" in res.stderr


def test_rmi_force_of_a_missing_image_exits_0_as_podman(tmp_path):
    from kiln.store import Store

    root = str(tmp_path / "root")
    with Store.open(root) as store:
        img = make_image(store, ["a"], ["a:1"])
    res = CliRunner().invoke(cli, ["--root", root, "rmi", "-f", "nothere"])
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "")
    res = CliRunner().invoke(cli, ["--root", root, "rmi", "-f", "nothere", "a:1"])
    # rmi's GC first sweeps what killed kiln processes left, and says so: on a machine
    # where other tests kill kiln, that line may come; nothing else may
    said = [line for line in res.stderr.splitlines() if "a killed kiln left" not in line]
    assert res.exit_code == 0 and said == []
    assert res.stdout.splitlines() == ["Untagged: docker.io/library/a:1", f"Deleted: {img.id[7:]}"]
    res = CliRunner().invoke(cli, ["--root", root, "rmi", "nothere"])
    assert (res.exit_code, res.stderr) == (1, "Error: nothere: image not known\n")


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_root_that_is_not_a_directory_is_one_error_line(tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    root = blocker if where == "file" else blocker / "store"
    res = CliRunner().invoke(cli, ["--root", str(root), "images"])
    assert res.exit_code == 125
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(
        f"Error: cannot use {root} as the store root: "
    )
    assert "unexpected" not in res.stderr and "--root" in res.stderr


def test_a_mistyped_verb_is_answered_with_the_verbs_it_is_close_to(tmp_path):
    # podman's (cobra's) suggestions: a misspelt verb names the near ones, a far one none
    env = {"KILN_ROOT": str(tmp_path / "root")}
    res = CliRunner().invoke(cli, ["imgaes"], env=env)
    assert res.exit_code == 125
    assert res.stderr == (
        "Error: unrecognized command `kiln imgaes`\n\nDid you mean this?\n\timages\n\n"
        "Try 'kiln --help' for more information\n"
    )
    res = CliRunner().invoke(cli, ["manifest", "inspcet"], env=env)
    assert "Did you mean this?\n\tinspect\n" in res.stderr
    res = CliRunner().invoke(cli, ["xyzzy"], env=env)
    assert "Did you mean" not in res.stderr and res.exit_code == 125
