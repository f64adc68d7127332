"""Where kiln's runs keep their state (``kiln.runtime.bundle`` makes bundles there), and the
file in a bundle that names the process running it.

Its own module so that the leftover sweep every build starts with (``kiln.runtime.leftovers``)
finds the runs a killed kiln left without importing the bundle writer and its helpers.
"""

from __future__ import annotations

import os
import re

from kiln.util.rootless import is_rootless, runtime_base

DEFAULT_RUNTIME_DIR = "/run/kiln/runtime"
OWNER_FILE = "owner"  # in a bundle: the kiln process running it (kiln.util.process_owner)
_OWNER_IN_NAME = re.compile(r"^kiln-[0-9a-f]{32}-o(\d+)_(\d+)-")


def bundle_prefix(run_id: str, owner: str) -> str:
    """The start of a bundle directory's name: its run id, then its owner (``pid:start``),
    so the directory names who runs it from the moment it exists (a kiln killed before it
    wrote ``OWNER_FILE`` left a bundle nobody could claim)."""
    return f"{run_id}-o{owner.replace(':', '_')}-"


def owner_in_name(name: str) -> str | None:
    """The owner a bundle directory's name carries; None for one made by an older kiln."""
    match = _OWNER_IN_NAME.match(name)
    return None if match is None else f"{match.group(1)}:{match.group(2)}"


def default_runtime_dir() -> str:
    """``$KILN_RUNTIME_DIR`` or /run/kiln/runtime (for a rootless user under
    ``$XDG_RUNTIME_DIR`` or the temporary directory); not created."""
    if os.environ.get("KILN_RUNTIME_DIR"):
        return os.environ["KILN_RUNTIME_DIR"]
    if not is_rootless():
        return DEFAULT_RUNTIME_DIR
    return os.path.join(runtime_base(), "kiln", "runtime")
