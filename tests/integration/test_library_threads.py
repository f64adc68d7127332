"""A script's store from several threads: one context serves 8 threads building and
reading at once; two contexts on one root see each other's writes; a closed root opens
again with everything in it."""

from __future__ import annotations

import os
import shutil
import threading

import pytest

import kiln

pytest_plugins = ["fixtures_images"]

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
]


def test_one_context_serves_eight_threads_building_and_reading(
    kiln_store, busybox_image, tmp_path, monkeypatch
):
    monkeypatch.setenv("KILN_RUNTIME_DIR", str(tmp_path / "rt"))
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(ctx: kiln.Context, i: int) -> None:
        try:
            opts = kiln.BuildOptions(dockerfile_text=f"FROM busybox\nRUN echo {i} > /n\n",
                                     tags=[f"t{i}"])  # fmt: skip
            image_id = kiln.build(ctx, opts).image_id
            assert kiln.inspect_image(ctx, f"t{i}")["Id"] == image_id.removeprefix("sha256:")
            assert any(f"localhost/t{i}:latest" in im.names for im in kiln.list_images(ctx))
            results[i] = image_id
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    with kiln.open_context(kiln_store.root) as ctx:
        threads = [threading.Thread(target=work, args=(ctx, i)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(set(results.values())) == 8  # eight builds, eight images

    with kiln.open_context(kiln_store.root) as a, kiln.open_context(kiln_store.root) as b:
        kiln.tag_image(a, "t0", "seen-by-b")
        assert kiln.image_exists(b, "seen-by-b")
        kiln.remove_images(b, ["seen-by-b"])
        assert not kiln.image_exists(a, "seen-by-b")
    with kiln.open_context(kiln_store.root) as again:
        assert {"sha256:" + kiln.inspect_image(again, f"t{i}")["Id"] for i in range(8)} == set(
            results.values())  # fmt: skip
