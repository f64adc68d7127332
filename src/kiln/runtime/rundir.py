"""Where kiln's runs keep their state (``kiln.runtime.bundle`` makes bundles there), and the
file in a bundle that names the process running it.

Its own module so that the leftover sweep every build starts with (``kiln.runtime.leftovers``)
finds the runs a killed kiln left without importing the bundle writer and its helpers.
"""

from __future__ import annotations

import os

from kiln.util.rootless import is_rootless, runtime_base

DEFAULT_RUNTIME_DIR = "/run/kiln/runtime"
OWNER_FILE = "owner"  # in a bundle: the kiln process running it (kiln.util.process_owner)


def default_runtime_dir() -> str:
    """``$KILN_RUNTIME_DIR`` or /run/kiln/runtime (for a rootless user under
    ``$XDG_RUNTIME_DIR`` or the temporary directory); not created."""
    if os.environ.get("KILN_RUNTIME_DIR"):
        return os.environ["KILN_RUNTIME_DIR"]
    if not is_rootless():
        return DEFAULT_RUNTIME_DIR
    return os.path.join(runtime_base(), "kiln", "runtime")
