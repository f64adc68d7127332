"""Why did a step miss the cache: the ``cache-miss`` events (`kiln build --explain`)."""

from __future__ import annotations

import os

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401

pytestmark = ROOT_MARKS


def _misses(env) -> dict[str, str]:
    """{instruction: reason} of the last build's misses; the events are cleared."""
    out = {e.data["instruction"]: e.data["reason"] for e in env.events.events
           if e.data.get("type") == "cache-miss"}  # fmt: skip
    env.events.events.clear()
    return out


def _write(ctx: str, rel: str, text: str, mode: int = 0o644) -> None:
    path = os.path.join(ctx, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def test_files_changed_added_removed_and_modes_are_named(build_env):  # noqa: F811
    text = "FROM busybox\nCOPY app/ /app\nCOPY run.sh /run.sh\nRUN cat /app/main.py\n"
    ctx = build_env.context_dir()
    for name in ("main.py", "util.py", "x.py", "y.py", "gone.py"):
        _write(ctx, f"app/{name}", name)
    _write(ctx, "run.sh", "echo hi\n")
    build_env.build(ctx, text)
    first = _misses(build_env)
    assert first["COPY app/ /app"] == "no earlier build of this step"
    assert first["RUN cat /app/main.py"] == "no earlier build of this step"

    for name in ("main.py", "util.py", "x.py"):
        _write(ctx, f"app/{name}", name + " changed")
    _write(ctx, "app/new.py", "new")
    os.unlink(os.path.join(ctx, "app/gone.py"))
    os.chmod(os.path.join(ctx, "run.sh"), 0o755)
    build_env.build(ctx, text)
    misses = _misses(build_env)
    assert misses["COPY app/ /app"] == (
        "3 files changed (app/main.py, app/util.py, +1); 1 file added (app/new.py); "
        "1 file removed (app/gone.py)"
    )
    # the mode-only change of the second COPY, whose parent changed too
    assert misses["COPY run.sh /run.sh"] == (
        "an earlier step changed (COPY app/ /app); file mode changed: run.sh 0644 -> 0755"
    )
    assert misses["RUN cat /app/main.py"] == "an earlier step changed (COPY app/ /app)"

    build_env.build(ctx, text)  # nothing changed: all hits, nothing to explain
    assert _misses(build_env) == {}


def test_build_arg_instruction_text_and_no_cache(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    text = "FROM busybox\nARG VERSION=1.2\nRUN echo $VERSION\nRUN echo a\n"
    build_env.build(ctx, text)
    _misses(build_env)
    build_env.build(ctx, text, build_args={"VERSION": "1.3"})
    misses = _misses(build_env)
    assert misses["RUN echo $VERSION"] == "build arg VERSION changed (1.2 -> 1.3)"
    # every RUN sees the stage's args (as with buildah), so its key holds them too
    assert misses["RUN echo a"] == "build arg VERSION changed (1.2 -> 1.3)"

    build_env.build(ctx, text.replace("RUN echo a", "RUN echo b"), build_args={"VERSION": "1.3"})
    assert _misses(build_env) == {"RUN echo b": "instruction text changed (was: RUN echo a)"}

    build_env.build(ctx, text, build_args={"VERSION": "1.3"}, no_cache=True)
    assert _misses(build_env) == {"RUN echo $VERSION": "--no-cache", "RUN echo a": "--no-cache"}


def test_base_image_changed(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    old = build_env.build(ctx, "FROM busybox\nRUN echo one > /v\n", tags=["mybase"]).image_id
    text = "FROM mybase\nRUN cat /v\n"
    build_env.build(ctx, text)
    _misses(build_env)
    new = build_env.build(ctx, "FROM busybox\nRUN echo two > /v\n", tags=["mybase"]).image_id
    _misses(build_env)
    build_env.build(ctx, text)
    assert _misses(build_env) == {
        "RUN cat /v": f"base image changed ({old[:19]}.. -> {new[:19]}..)"
    }


def test_step_facts_in_events_and_cache_inputs_stay_bounded(build_env):  # noqa: F811
    store = build_env.store
    store.inputs_per_locator = 2
    ctx = build_env.context_dir()
    for n in range(4):
        build_env.build(ctx, f"FROM busybox\nRUN echo {n}\n")
    ends = [e.data for e in build_env.events.events if e.data.get("type") == "step-end"]
    run_ends = [d for d in ends if d["step"] == 2]
    assert len(run_ends) == 4
    for d in run_ends:
        assert d["state"] == "done" and d["cache"]["hit"] is False
        assert d["ended"] >= d["started"] > 0 and d["duration"] >= 0
        assert d["image_id"].startswith("sha256:")
    # the RUN step (one locator) keeps its 2 newest inputs, whatever the number of builds
    rows = store.db.query("SELECT COUNT(*) FROM cache_inputs GROUP BY locator")
    assert max(r[0] for r in rows) == 2
