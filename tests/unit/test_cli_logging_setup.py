"""kiln.cli.main.after_import: a function runs right after a module's first import, or at once
when it is imported already; the command line configures logging this way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kiln.cli.main import after_import


def test_a_module_imported_already_runs_the_function_at_once():
    ran: list[str] = []
    after_import("os", lambda: ran.append("now"))
    assert ran == ["now"]


def test_the_function_runs_after_the_first_import_only(tmp_path, monkeypatch):
    (tmp_path / "kiln_after_import_probe.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[int] = []

    def then() -> None:
        seen.append(sys.modules["kiln_after_import_probe"].VALUE)  # the module ran first

    after_import("kiln_after_import_probe", then)
    try:
        assert seen == []
        import kiln_after_import_probe  # noqa: F401

        assert seen == [42]
        del sys.modules["kiln_after_import_probe"]
        import kiln_after_import_probe  # noqa: F401, F811

        assert seen == [42]
    finally:
        sys.modules.pop("kiln_after_import_probe", None)


# a command that never logs does not import logging; what imports it later is configured
# then, with kiln's format and the command's level (-S: no site .pth imports logging first)
SCRIPT = """
import sys
sys.path[:0] = [p for p in sys.argv.pop(1).split("\\n") if p]
from kiln.cli.main import run
code = run(sys.argv[1:])
assert code == 0, code
print("logging" in sys.modules)
import logging
logging.getLogger("kiln.test").warning("seen %s", "here")
logging.getLogger("kiln.test").info("not seen")
"""


@pytest.mark.parametrize("level, logs", [("warn", True), ("error", False)])
def test_the_command_line_configures_logging_once_it_is_imported(tmp_path, level, logs):
    done = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT, "\n".join(sys.path),
         "--root", str(tmp_path), "--log-level", level, "images"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"
    assert ("WARNING[kiln.test] seen here" in done.stderr) == logs
    assert "not seen" not in done.stderr
