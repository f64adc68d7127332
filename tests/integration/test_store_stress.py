"""Seven kiln processes at once on one store (builds, tag, untag, rmi, prune, push, pull,
save, load, import, export, working containers, docker-py calls to a ``kiln serve``), some
SIGKILLed: no command hangs or fails unclearly, every image reads back, the store checks
clean and a collection leaves nothing nothing refers to (``tests/store_stress.py`` says
what is run and checked; ``bench/store_stress.py --seconds N --seed S`` runs longer ones).

``KILN_STRESS_SEED`` picks another seed (a failure names the command and its error).
"""

from __future__ import annotations

import os
import shutil

import pytest

import store_stress
from fixtures_images import make_busybox_rootfs
from registry_servers import start_registry

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

SECONDS = 16.0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_many_kiln_processes_killed_at_random_leave_a_sound_store(tmp_path):
    with start_registry("plain", str(tmp_path / "registry")) as reg:
        stress = store_stress.Stress(str(tmp_path / "stress"), reg.host,
                                     seed=int(os.environ.get("KILN_STRESS_SEED", "5")))  # fmt: skip
        try:
            stress.setup(make_busybox_rootfs(str(tmp_path / "rootfs.tar")))
            seconds = stress.run(SECONDS)
            problems = stress.verify()
        finally:
            stress.cleanup()
    summary = stress.summary(seconds)
    print(summary)  # what it did, for -s
    assert problems == [], summary + "\n" + "\n".join(problems)
    assert sum(stress.kills.values()) >= 2, summary  # it did kill
    assert stress.ops["build"] >= 5 and stress.ops["push"] >= 1, summary  # and work
