"""A build record names each step's new layer, reading one image per stage (root, runc)."""

from __future__ import annotations

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.build import record as record_module

pytestmark = [*ROOT_MARKS, pytest.mark.timeout(300)]

THREE_STAGES = """\
FROM busybox AS one
RUN echo a > /a
ENV X=1
RUN echo b > /b
RUN rm /a
FROM busybox AS two
WORKDIR /w
RUN echo c > /w/c
LABEL k=v
RUN echo d > /w/d
FROM busybox
COPY --from=one /b /b
COPY --from=two /w /w
RUN echo e > /e
"""


def test_each_step_layer_is_its_images_top_layer(build_env, monkeypatch):  # noqa: F811
    opened: list[str] = []
    real = record_module.image_layers

    def counted(store, image_id):
        opened.append(image_id)
        return real(store, image_id)

    monkeypatch.setattr(record_module, "image_layers", counted)
    result = build_env.build(build_env.context_dir(), THREE_STAGES, tags=["three"])
    record = build_env.store.get_build_record(result.record_id).record
    grown = [s for s in record["steps"] if s.get("layer")]
    assert len(grown) == 8, record["steps"]  # every RUN and COPY, in three stages
    assert len(set(opened)) <= 3, opened  # one image per stage, not one per step
    for step in grown:
        top = real(build_env.store, step["image_id"])[-1]
        assert step["layer"] == top, step
    assert record["result"]["layers"] == real(build_env.store, result.image_id)
