"""A script stops a pull from another thread with ``PullRequest.cancel``, as it stops a
build with ``BuildOptions.cancel``: the pull raises ``Cancelled`` at its next event and
leaves nothing in the store; the same pull works afterwards."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

import kiln

pytest_plugins = ["fixtures_images"]  # kiln_store
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

HTTP = kiln.RegistryOptions(tls_verify=False)


def _random_layer(path: Path) -> str:
    """A tar of 3 MiB that does not compress: its blob makes several progress events."""
    data = os.urandom(3 << 20)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("noise")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_a_pull_is_cancelled_from_another_thread_and_leaves_nothing(
    kiln_store, registry_plain, tmp_path
):
    ref = f"{registry_plain.host}/library-cancel/noise:1"
    with kiln.open_context(kiln_store.root) as ctx:
        image_id = kiln.import_image(ctx, _random_layer(tmp_path / "noise.tar"), "noise:1").id
        kiln.push_image(ctx, "noise:1", f"docker://{ref}", options=HTTP)
    cancel = threading.Event()

    def cancel_once_it_runs(event: kiln.Event) -> None:
        if event.kind == "progress":  # a blob is on its way: as a caller's thread would
            cancel.set()

    root = str(tmp_path / "other")
    with kiln.open_context(root, events=kiln.CallbackSink(cancel_once_it_runs)) as ctx:
        pull = kiln.PullRequest.of(ref, options=HTTP, cancel=cancel)
        with pytest.raises(kiln.Cancelled, match="the pull was cancelled"):
            kiln.pull_image(ctx, pull)
        assert kiln.list_images(ctx, all=True) == []
        with pytest.raises(kiln.Cancelled):  # set before the call: nothing is asked
            kiln.ensure_image(ctx, pull)
        assert ctx.collect_garbage(dry_run=True).blobs_removed == 0  # nothing half-pulled
        again = kiln.pull_image(ctx, kiln.PullRequest.of(ref, options=HTTP))
        assert again.image_id == image_id
