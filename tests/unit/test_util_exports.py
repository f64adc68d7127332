"""A package's lazily imported public names resolve to what they name, whatever was imported
first (``kiln.util.exports.lazy_exports``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# the packages whose __init__ uses lazy_exports
PACKAGES = ["kiln", "kiln.container", "kiln.image"]

_CHILD = r"""
import importlib, pkgutil, sys, types
package = importlib.import_module(sys.argv[1])
# every submodule first: importing one sets the package's attribute of its name
for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
    if info.name.startswith(("kiln.api", "kiln.cli")):  # optional packages, servers
        continue
    importlib.import_module(info.name)
wrong = []
for name in package.__all__:
    if name.startswith("__"):
        continue
    value = getattr(package, name)
    # a package may be a public callable too (kiln.build: the package, callable as the use case)
    if isinstance(value, types.ModuleType) and not callable(value):
        wrong.append(name)
print(" ".join(wrong))
"""


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_what_it_names_after_every_submodule_was_imported(package):
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, package],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "", f"{package}: these public names are modules: {done.stdout}"


def test_a_name_resolves_on_first_use_and_is_then_a_plain_attribute():
    code = (
        "import sys, kiln.container as c\n"
        "before = 'kiln.container.builder' in sys.modules\n"
        "b = c.Builder\n"
        "print(before, 'Builder' in vars(c), b.__module__, 'nope' in dir(c))\n"
        "try:\n    c.nope\nexcept AttributeError as e:\n    print('AttributeError', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    first, second = done.stdout.splitlines()
    assert first == "False True kiln.container.builder False"
    assert second == "AttributeError module 'kiln.container' has no attribute 'nope'"
