"""What a short ``kiln build`` pays before it does anything: importing the modules of the
build and RUN path must not start programs (``ctypes.util.find_library`` runs ``ldconfig
-p``: a fork and exec at every start of a build)."""

from __future__ import annotations

import ast
import subprocess
import sys

# the modules a build with a RUN step imports, the RUN runtime's helpers included
BUILD_PATH = [
    "kiln.cli.main",
    "kiln.cli.commands.build",
    "kiln.ops.build",
    "kiln.build.executor",
    "kiln.build.dispatch_run",
    "kiln.runtime",
    "kiln.runtime.runc",
    "kiln.runtime.linux",
    "kiln.runtime.seccomp",
    "kiln.container.builder",
]

_CHILD = """
import sys
started = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork"):
        started.append((event, str(args)[:200]))
sys.addaudithook(hook)
for name in sys.argv[1:]:
    __import__(name)
print(repr(started))
"""


def test_importing_the_build_path_starts_no_program():
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *BUILD_PATH],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout


# Every dataclass costs CPU at import: kiln.util.lazy_dataclass compiles its generated
# methods on first call, but the class is still processed field by field. A new one on this
# path should be worth it: raise the budget in the same commit that says why.
DATACLASS_BUDGET = 102 + 4

_COUNT_DATACLASSES = """
import dataclasses, sys
from kiln.util import lazy_dataclass
made = []
def counting(process):
    def count(cls, *args, **kwargs):
        documented = bool(cls.__dict__.get("__doc__"))
        made.append((f"{cls.__module__}.{cls.__qualname__}", documented))
        return process(cls, *args, **kwargs)
    return count
dataclasses._process_class = counting(dataclasses._process_class)
if lazy_dataclass._NS is not None:  # kiln's dataclasses run over its copy of the namespace
    lazy_dataclass._NS["_process_class"] = counting(lazy_dataclass._NS["_process_class"])
for name in sys.argv[1:]:
    __import__(name)
print(repr(made))
"""


def test_the_build_path_creates_few_dataclasses_and_each_has_a_docstring():
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_DATACLASSES, *BUILD_PATH],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    made = ast.literal_eval(done.stdout)
    assert any(name == "kiln.build.instructions.Run" for name, _ in made)  # the hook counted
    assert len(made) <= DATACLASS_BUDGET, sorted(name for name, _ in made)
    # without a docstring, @dataclass makes one from inspect.signature(cls): ~50-100 us a class,
    # and kiln's lazy dataclass compiles such a class's methods eagerly
    undocumented = [name for name, documented in made if not documented]
    assert not undocumented, f"dataclasses without a docstring on the build path: {undocumented}"
