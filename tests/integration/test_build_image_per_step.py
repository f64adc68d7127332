"""``image_per_step`` (the Docker API's builds, as dockerd's classic builder): every step is
an image, a metadata one too, the parent of the next; the image built is the one it would
be without (the same layers, files and history), first and from the cache."""

from __future__ import annotations

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

DOCKERFILE = """\
FROM busybox
VOLUME /v
ENV A=1
COPY a.txt /a.txt
EXPOSE 80
USER 1
CMD ["sh"]
"""


def _lineage(env, ref: str) -> list[list[str]]:
    """From the image up its ``Parent`` links: each image's history (created_by)."""
    from kiln.ops import images

    chain = []
    while ref:
        data = images.inspect_image(env.ctx, ref)
        chain.append([h.created_by for h in env.image(data["Id"]).config.history])
        ref = data["Parent"]
    return chain


def _shape(env, ref: str) -> tuple:
    """What of the image must not depend on ``image_per_step``."""
    img = env.image(ref)
    history = [(h.created_by, h.empty_layer) for h in img.config.history]
    return len(img.layers), history, env.files(ref), img.config.config.to_json()


def test_each_metadata_step_is_the_parent_of_the_next(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"a.txt": "a\n"})
    build_env.build(ctx, DOCKERFILE, tags=["steps:1"], image_per_step=True)
    chain = _lineage(build_env, "steps:1")
    # CMD, USER, EXPOSE, COPY, ENV, VOLUME, then busybox: one image a step
    assert [len(h) for h in chain] == [7, 6, 5, 4, 3, 2, 1], chain
    assert all(chain[i][:-1] == chain[i + 1] for i in range(len(chain) - 1)), chain


def test_the_image_is_the_one_built_without_and_rebuilds_from_the_cache(build_env, tmp_path):  # noqa: F811
    # each image_per_step build first, then the one without it, which reads no cache (a
    # step it took from the other build's would show nothing); the stage's last step is
    # committed at its end under the key the build without it gives (one cache serves
    # both), so the no-cache build's image replaces it there: rebuild before it
    ctx = build_env.context_dir(files={"a.txt": "a\n"})
    first = build_env.build(ctx, DOCKERFILE, tags=["steps:1"], image_per_step=True)
    again = build_env.build(ctx, DOCKERFILE, tags=["steps:2"], image_per_step=True)
    assert again.image_id == first.image_id
    build_env.build(ctx, DOCKERFILE, tags=["plain:1"], no_cache=True)
    assert _shape(build_env, "steps:1") == _shape(build_env, "plain:1")
    assert build_env.files("steps:1")["v"] == "dir"  # VOLUME's, made in COPY's layer
    # the steps before COPY from the cache, COPY anew: VOLUME's directory is still made
    (tmp_path / "ctx" / "a.txt").write_text("changed\n")
    build_env.build(ctx, DOCKERFILE, tags=["steps:3"], image_per_step=True)
    build_env.build(ctx, DOCKERFILE, tags=["plain:3"], no_cache=True)
    assert _shape(build_env, "steps:3") == _shape(build_env, "plain:3")
    assert build_env.files("steps:3")["a.txt"] == b"changed\n"
