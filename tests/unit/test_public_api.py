"""``kiln.__all__`` is the library's promise: every name resolves, and importing
kiln stays cheap (no store, registry or CLI code until a name is used)."""

from __future__ import annotations

import subprocess
import sys

import kiln


def test_every_public_name_resolves():
    for name in kiln.__all__:
        assert getattr(kiln, name) is not None, name


def test_import_kiln_loads_nothing_heavy():
    code = (
        "import sys, kiln; heavy = [m for m in ('sqlite3', 'httpx', 'click', 'rich', "
        "'kiln.store', 'kiln.registry', 'kiln.build') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_names_are_attribute_errors():
    try:
        kiln.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
