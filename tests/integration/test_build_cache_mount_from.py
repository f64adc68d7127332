"""``RUN --mount=type=cache,from=STAGE_OR_IMAGE,source=...``: the cache starts as a copy of
``source`` in that stage or image (BuildKit's documented behaviour), keeps what RUN steps
write across builds, never writes into the stage it came from, and is a cache of its own
per ``from`` image; ``z``/``Z`` are accepted (no-ops without SELinux). Before, ``from=``
was ignored: the cache started empty."""

from __future__ import annotations

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS

SEEDED = """FROM busybox AS seed
RUN mkdir -p /seed/sub && echo {word} > /seed/a && echo deep > /seed/sub/b && chmod 0750 /seed/sub
FROM busybox
ARG N=1
RUN --mount=type=cache,id=c1,from=seed,source=/seed,target=/c,z \\
    cat /c/a /c/sub/b > /got && stat -c '%a' /c/sub > /mode && ls /c > /before \\
    && echo written > /c/w
RUN --mount=type=cache,id=c1,from=seed,source=/seed,target=/c,Z ls /c > /after
COPY --from=seed /seed /copied
"""


def test_a_cache_from_a_stage_starts_as_its_source(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    out = build_env.build(ctx, SEEDED.format(word="one"))
    files = build_env.files(out.image_id)
    assert files["got"] == b"one\ndeep\n"
    assert files["mode"] == b"750\n"
    assert files["before"] == b"a\nsub\n"
    assert files["after"] == b"a\nsub\nw\n", "the cache keeps what the first RUN wrote"
    assert "copied/w" not in files, "the stage the cache came from is never written"
    # the RUN steps again (another N; the seed stage is a hit): the persistent, already
    # seeded cache is reused
    again = build_env.build(ctx, SEEDED.format(word="one"), build_args={"N": "2"})
    assert again.image_id != out.image_id
    assert build_env.files(again.image_id)["before"] == b"a\nsub\nw\n"
    # another seed image: a cache of its own, seeded afresh
    other = build_env.build(ctx, SEEDED.format(word="two"))
    other_files = build_env.files(other.image_id)
    assert other_files["got"] == b"two\ndeep\n" and other_files["before"] == b"a\nsub\n"


def test_a_cache_from_an_image(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    text = (
        "FROM busybox\n"
        "RUN --mount=type=cache,from=busybox,source=/bin,target=/c test -e /c/busybox "
        "&& echo ok > /ok\n"
    )
    out = build_env.build(ctx, text)
    assert build_env.files(out.image_id)["ok"] == b"ok\n"
