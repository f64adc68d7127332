"""Builds for other platforms (root, runc, QEMU user emulation from qemu-user-static).

A RUN in an arm64 stage runs under QEMU, the binfmt_misc handler registered (and
binfmt_misc mounted) by kiln when missing; without an emulator the step fails saying
which platform and how to enable it; native steps never touch binfmt_misc; a local image
of another platform does not satisfy ``--platform``; ``FROM --platform=$BUILDPLATFORM``
runs natively and copies into the target stage. The arm64 base comes from Debian's
``busybox-static:arm64`` (tests/foreign_images.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import MTIME, busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from foreign_images import busybox_arm64_rootfs_tar  # noqa: F401
from kiln.errors import InvalidArgument, NotFound, ProcessFailed, Unavailable
from kiln.oci import Platform
from kiln.runtime.binfmt import BINFMT_DIR, find_emulator, host_arch

pytestmark = [
    *ROOT_MARKS,
    pytest.mark.skipif(host_arch() != "amd64", reason="the foreign platform here is arm64"),
    pytest.mark.skipif(
        not os.path.exists("/usr/bin/qemu-aarch64-static"), reason="needs qemu-user-static"
    ),
]
SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def _import(store, tar: str, name: str, platform: str) -> str:
    from kiln.image import import_tarball
    from kiln.oci import Platform

    with open(tar, "rb") as f:
        rec = import_tarball(
            store, f, ['CMD ["/bin/sh"]'], "busybox rootfs",
            names=[name], platform=Platform.parse(platform), timestamp=MTIME,
        )  # fmt: skip
    return rec.id


@pytest.fixture
def arm64_env(build_env, busybox_arm64_rootfs_tar):  # noqa: F811
    _import(build_env.store, busybox_arm64_rootfs_tar, "busybox-arm64:latest", "linux/arm64")
    return build_env


def _file(env, ref: str, path: str) -> str:
    return env.files(ref)[path].decode()


def test_a_foreign_run_runs_under_qemu_with_the_platform_args(arm64_env):
    ctx = arm64_env.context_dir()
    arm64_env.build(
        ctx,
        "FROM busybox-arm64\n"
        "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH\n"
        'RUN echo "$(uname -m) $TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT]'
        ' $BUILDPLATFORM $BUILDARCH" > /out\n',
        platform="linux/arm64",
        tags=["foreign"],
    )
    img = arm64_env.validate("foreign")
    assert (img.config.os, img.config.architecture) == ("linux", "arm64")
    assert _file(arm64_env, "foreign", "out") == (
        "aarch64 linux/arm64 linux arm64 [] linux/amd64 amd64\n"
    )
    emulator = find_emulator("arm64")
    assert emulator is not None and emulator.enabled and "F" in emulator.flags


def _unregister_arm64() -> None:
    """Start without a handler for arm64 (another test or the machine registered one)."""
    name = os.path.join(BINFMT_DIR, "qemu-aarch64")
    if os.path.exists(name):
        with open(name, "w") as f:
            f.write("-1")
    assert find_emulator("arm64") is None


def test_the_handler_is_registered_when_none_is(arm64_env):
    _unregister_arm64()
    ctx = arm64_env.context_dir()
    arm64_env.build(ctx, "FROM busybox-arm64\nRUN uname -m > /m\n", tags=["reg"])
    assert _file(arm64_env, "reg", "m") == "aarch64\n"
    emulator = find_emulator("arm64")
    assert emulator.enabled and "F" in emulator.flags
    assert emulator.interpreter.startswith("/usr/")  # Debian's, from binfmt.d


def test_no_emulator_names_platform_step_and_package(build_env, busybox_rootfs_tar):  # noqa: F811
    # no QEMU exists for ia64: nothing registered, nothing to register
    _import(build_env.store, busybox_rootfs_tar, "itanium:latest", "linux/ia64")
    ctx = build_env.context_dir()
    with pytest.raises(Unavailable) as err:
        build_env.build(ctx, "FROM itanium\nRUN echo never\n")
    text = str(err.value)
    assert 'building at STEP "RUN echo never" (Containerfile:2)' in text
    assert "linux/ia64" in text and "qemu-user-static" in text
    assert "never" not in build_env.output()


def test_no_emulator_for_one_platform_fails_before_any_platform_runs(build_env, busybox_rootfs_tar):  # noqa: F811, E501
    _import(build_env.store, busybox_rootfs_tar, "base-ia64:latest", "linux/ia64")
    build_env.store.tag("base-amd64:latest", build_env.store.resolve_image("busybox").id)
    images = len(build_env.store.list_images())
    ctx = build_env.context_dir()
    with pytest.raises(Unavailable) as err:
        build_env.build(
            ctx, "ARG TARGETARCH\nFROM base-$TARGETARCH\nRUN echo step-one\n",
            platforms=["linux/amd64", "linux/ia64"], manifest="never",
        )  # fmt: skip
    assert str(err.value).startswith(
        "cannot build for linux/ia64: the RUN at Containerfile:3 needs an emulator"
    )
    assert "qemu-user-static" in str(err.value)
    assert build_env.messages("step") == [] and "step-one" not in build_env.output()
    assert len(build_env.store.list_images()) == images
    # a foreign target whose only RUN is in a $BUILDPLATFORM stage needs no emulator
    result = build_env.build(
        ctx, "FROM --platform=$BUILDPLATFORM busybox AS b\nRUN echo made > /f\n"
        "FROM base-ia64\nCOPY --from=b /f /f\n", platform="linux/ia64", tags=["ia64-copy"],
    )  # fmt: skip
    assert build_env.image(result.image_id).config.architecture == "ia64"


def test_a_foreign_base_without_platform_is_warned_about(build_env, busybox_rootfs_tar):  # noqa: F811
    _import(build_env.store, busybox_rootfs_tar, "itanium:latest", "linux/ia64")
    ctx = build_env.context_dir()
    build_env.build(ctx, "FROM itanium\nLABEL a=b\n")
    assert build_env.messages("warning") == [
        "FROM itanium: the image is for linux/ia64, not this machine's linux/amd64: the image "
        "built is linux/ia64 too, and its RUN steps run under emulation (--platform linux/ia64 "
        "says so and silences this)"
    ]
    build_env.events.events.clear()
    build_env.build(ctx, "FROM itanium\nLABEL a=b\n", platform="linux/ia64")
    build_env.build(ctx, "FROM busybox\nLABEL a=b\n")
    assert build_env.messages("warning") == []


def test_a_local_image_of_another_platform_does_not_satisfy_platform(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with pytest.raises(NotFound, match=r"busybox: image not known for linux/arm64 \(the local "):
        build_env.build(ctx, "FROM busybox\nRUN true\n", platform="linux/arm64", pull="never")


def test_a_local_list_without_the_platform_is_named_when_its_pull_fails(
    build_env,  # noqa: F811
    busybox_rootfs_tar,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    from kiln.ops import manifests

    _import(build_env.store, busybox_rootfs_tar, "itanium:latest", "linux/ia64")
    manifests.create(build_env.ctx, "base", ["busybox", "itanium"])
    conf = tmp_path / "registries.conf"  # no search registries: the short name cannot pull
    conf.write_text("unqualified-search-registries = []\n")
    monkeypatch.setenv("KILN_REGISTRIES_CONF", str(conf))
    with pytest.raises(NotFound) as err:
        build_env.build(build_env.context_dir(), "FROM base\n", platform="linux/arm/v7")
    assert str(err.value).startswith(
        "creating build container: base: image not known for linux/arm/v7 (base: no image for "
        "platform linux/arm/v7 in the manifest list (it has: linux/amd64, linux/ia64)); "
        'pulling it failed too: short-name "base" did not resolve'
    )


def test_build_platform_stage_runs_natively_and_feeds_the_target(arm64_env):
    ctx = arm64_env.context_dir()
    arm64_env.build(
        ctx,
        "FROM --platform=$BUILDPLATFORM busybox AS build\n"
        "ARG TARGETARCH\n"
        'RUN echo "built on $(uname -m) for $TARGETARCH" > /artifact\n'
        "FROM busybox-arm64\n"
        "COPY --from=build /artifact /artifact\n"
        "RUN cat /artifact > /both && uname -m >> /both\n",
        platform="linux/arm64",
        tags=["cross"],
    )
    assert _file(arm64_env, "cross", "both") == "built on x86_64 for arm64\naarch64\n"
    assert arm64_env.image("cross").config.architecture == "arm64"


def test_a_variant_asked_for_is_the_image_variant_when_the_base_has_none(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    text = "FROM busybox\nRUN echo hi > /hi\n"
    v2 = build_env.build(ctx, text, platform="linux/amd64/v2")
    assert build_env.image(v2.image_id).config.platform == Platform("linux", "amd64", "v2")
    plain = build_env.build(ctx, text, platform="linux/amd64")
    assert plain.image_id != v2.image_id and plain.cache_hits == 0  # a key of its own
    assert build_env.image(plain.image_id).config.variant == ""
    only_from = build_env.build(ctx, "FROM busybox\n", platform="linux/amd64/v2")
    assert build_env.image(only_from.image_id).config.variant == "v2"


def test_scratch_stage_takes_its_from_platform(build_env):  # noqa: F811
    ctx = build_env.context_dir(files={"f": "x"})
    build_env.build(ctx, "FROM --platform=linux/arm64 scratch\nCOPY f /f\n", tags=["s"])
    assert build_env.image("s").config.architecture == "arm64"


def test_kiln_run_in_a_foreign_working_container(arm64_env):
    root = arm64_env.store.root
    arm64_env.store.close()
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC)}
    kiln = [sys.executable, "-m", "kiln.cli.main", "--root", root]

    def call(*args: str) -> str:
        proc = subprocess.run([*kiln, *args], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    name = call("from", "busybox-arm64")
    _unregister_arm64()
    assert call("run", name, "--", "uname", "-m") == "aarch64"
    call("rm", name)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_native_steps_never_touch_binfmt_and_foreign_ones_mount_it(arm64_env):
    """In a mount namespace of its own with binfmt_misc unmounted: a native build leaves it
    unmounted (no emulation cost), a foreign RUN mounts it and runs."""
    root = arm64_env.store.root
    arm64_env.store.close()
    ctx = arm64_env.context_dir()
    with open(os.path.join(ctx, "Containerfile"), "w") as f:
        f.write("ARG BASE\nFROM $BASE\nRUN uname -m > /m\n")
    kiln = f"{sys.executable} -m kiln.cli.main --root {root}"
    check = f"test -e {BINFMT_DIR}/status && echo mounted || echo unmounted"
    script = (
        f"umount {BINFMT_DIR} 2>/dev/null; {check}; "
        f"{kiln} build -q --build-arg BASE=busybox {ctx} >/dev/null && {check} && "
        f"{kiln} build -q --build-arg BASE=busybox-arm64 {ctx} >/dev/null && {check}"
    )
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC)}
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["unmounted", "unmounted", "mounted"]


# -- several platforms in one build ------------------------------------------------------

CROSS = """\
FROM --platform=$BUILDPLATFORM busybox AS build
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT
RUN echo "build T=$TARGETPLATFORM/$TARGETOS/$TARGETARCH/$TARGETVARIANT \\
B=$BUILDPLATFORM/$BUILDOS/$BUILDARCH/$BUILDVARIANT $(uname -m)" > /out
FROM $BASE
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT
COPY --from=build /out /out
RUN echo "final T=$TARGETPLATFORM/$TARGETOS/$TARGETARCH/$TARGETVARIANT \\
B=$BUILDPLATFORM/$BUILDOS/$BUILDARCH/$BUILDVARIANT $(uname -m)" >> /out
"""


def _per_arch_bases(env) -> None:
    """``base-amd64`` and ``base-arm64``, for ``FROM base-$TARGETARCH``."""
    env.store.tag("base-amd64:latest", env.store.resolve_image("busybox").id)
    env.store.tag("base-arm64:latest", env.store.resolve_image("busybox-arm64").id)


def test_two_platforms_get_their_own_args_and_stages(arm64_env):
    _per_arch_bases(arm64_env)
    ctx = arm64_env.context_dir()
    result = arm64_env.build(
        ctx, "ARG TARGETARCH\nARG BASE=base-$TARGETARCH\n" + CROSS,
        platforms=["linux/amd64", "linux/arm64"],
    )  # fmt: skip
    images = result.platform_images
    assert sorted(images) == ["linux/amd64", "linux/arm64"]
    for platform, image_id in images.items():
        arch = platform.split("/")[1]
        img = arm64_env.validate(image_id)
        assert img.config.architecture == arch
        assert arm64_env.store.names_of(image_id) == []  # untagged, as buildah leaves them
        machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
        assert _file(arm64_env, image_id, "out") == (
            f"build T=linux/{arch}/linux/{arch}/ B=linux/amd64/linux/amd64/ x86_64\n"
            f"final T=linux/{arch}/linux/{arch}/ B=linux/amd64/linux/amd64/ {machine}\n"
        )
    steps = arm64_env.messages("step")
    assert any(m.startswith("[linux/arm64] [2/2] STEP 4/4: RUN echo") for m in steps)
    assert [e.data["platform"] for e in arm64_env.events.events if e.kind == "result"] == [
        "linux/amd64", "linux/arm64",
    ]  # fmt: skip


def test_one_platform_failing_fails_the_build_naming_it_and_stops_the_other(arm64_env):
    _per_arch_bases(arm64_env)
    ctx = arm64_env.context_dir()
    started = time.monotonic()
    with pytest.raises(ProcessFailed) as err:
        arm64_env.build(
            ctx,
            "ARG TARGETARCH\nFROM base-$TARGETARCH\n"
            'RUN if [ "$(uname -m)" = aarch64 ]; then exit 3; fi; sleep 300\n'
            "RUN echo never-reached\n",
            platforms=["linux/amd64", "linux/arm64"],
        )
    # amd64's sleep was stopped: far less than its 300 s, with room for a slow QEMU start
    assert time.monotonic() - started < 120
    assert err.value.exit_code == 3
    assert str(err.value).startswith('building for linux/arm64: building at STEP "RUN if')
    assert "never-reached" not in arm64_env.output()


@pytest.mark.parametrize("jobs,together", [(1, False), (2, True)])
def test_platforms_build_in_parallel_up_to_jobs(arm64_env, tmp_path, jobs, together):
    _per_arch_bases(arm64_env)
    shared = tmp_path / f"shared-{jobs}"
    shared.mkdir()
    ctx = arm64_env.context_dir()
    # each RUN waits for the other platform's file: up to 60 s when they run together (a
    # QEMU start on a loaded machine can take seconds), 2 s when one runs after the other
    wait = 600 if together else 20
    result = arm64_env.build(
        ctx,
        "ARG TARGETARCH\nFROM base-$TARGETARCH\nARG TARGETARCH\n"
        "RUN touch /shared/$TARGETARCH && i=0 && while [ $(ls /shared | wc -l) -lt 2 ]"
        f" && [ $i -lt {wait} ]; do sleep 0.1; i=$((i+1)); done && ls /shared > /seen\n",
        platforms=["linux/amd64", "linux/arm64"], jobs=jobs, volumes=[f"{shared}:/shared"],
    )  # fmt: skip
    seen = [_file(arm64_env, i, "seen").split() for i in result.platform_images.values()]
    if together:
        assert seen == [["amd64", "arm64"], ["amd64", "arm64"]]
    else:
        assert seen == [["amd64"], ["amd64", "arm64"]]


def test_a_platform_prefixes_only_lines_with_text(build_env, busybox_rootfs_tar):  # noqa: F811
    _import(build_env.store, busybox_rootfs_tar, "base-ia64:latest", "linux/ia64")
    build_env.store.tag("base-amd64:latest", build_env.store.resolve_image("busybox").id)
    ctx = build_env.context_dir()
    build_env.build(ctx, "ARG TARGETARCH\nFROM base-$TARGETARCH\nLABEL a=b\n",
                    platforms=["linux/amd64", "linux/ia64"])  # fmt: skip
    steps = build_env.messages("step-end")
    assert steps and set(steps) == {""}  # a plain view prints no "[linux/ia64] " lines
    assert "[linux/ia64] STEP 2/2: LABEL a=b" in build_env.messages("step")


def test_a_tag_with_several_platforms_is_refused(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with pytest.raises(InvalidArgument, match="use --manifest NAME"):
        build_env.build(ctx, "FROM busybox\n", platforms=["linux/amd64", "linux/arm64"],
                        tags=["t"])  # fmt: skip
    with pytest.raises(InvalidArgument, match="--all-platforms and --platform"):
        build_env.build(ctx, "FROM busybox\n", platform="linux/arm64", all_platforms=True)


def test_a_bad_manifest_name_is_refused_before_building(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with pytest.raises(InvalidArgument, match="^--manifest L1: invalid reference format"):
        build_env.build(ctx, "FROM busybox\nRUN echo built\n", platforms=["linux/amd64"],
                        manifest="L1")  # fmt: skip
    assert build_env.messages("step") == [] and "built" not in build_env.output()


# -- joining the images in a manifest list -------------------------------------------------


def _base_list(env) -> None:
    """``base``: a manifest list of busybox (amd64) and busybox-arm64."""
    from kiln.ops import manifests

    manifests.create(env.ctx, "base", ["busybox", "busybox-arm64"])


def _list_platforms(env, name: str) -> dict[str, str]:
    from kiln.ops import manifests

    doc = manifests.document(env.ctx, name)
    return {str(m.platform): str(m.digest) for m in doc.manifests}


def test_manifest_joins_the_platforms_and_a_rebuild_replaces_them(arm64_env):
    _base_list(arm64_env)
    ctx = arm64_env.context_dir()
    text = "FROM base\nRUN uname -m > /m\n"
    result = arm64_env.build(ctx, text, platforms=["linux/amd64", "linux/arm64"], manifest="multi")
    first = _list_platforms(arm64_env, "multi")
    assert sorted(first) == ["linux/amd64", "linux/arm64"]
    assert result.manifest_list and result.image_id == result.manifest_list
    for platform, image_id in result.platform_images.items():
        rec = arm64_env.store.get_image(image_id)
        assert first[platform] == rec.manifest_digest
        want = {"linux/amd64": "x86_64\n", "linux/arm64": "aarch64\n"}[platform]
        assert _file(arm64_env, image_id, "m") == want  # FROM base took the platform's image
    result = arm64_env.build(
        ctx, text + "RUN echo 2 > /v\n", platforms=["linux/amd64", "linux/arm64"],
        manifest="multi",
    )  # fmt: skip
    second = _list_platforms(arm64_env, "multi")
    assert sorted(second) == ["linux/amd64", "linux/arm64"]  # replaced, not added
    assert set(second.values()).isdisjoint(first.values())


def test_a_failed_platform_leaves_no_list_named(arm64_env):
    _base_list(arm64_env)
    from kiln.ops import manifests

    ctx = arm64_env.context_dir()
    with pytest.raises(ProcessFailed, match="^building for linux/arm64: "):
        arm64_env.build(
            ctx, 'FROM base\nRUN [ "$(uname -m)" = x86_64 ]\n',
            platforms=["linux/amd64", "linux/arm64"], manifest="broken",
        )  # fmt: skip
    assert not manifests.exists(arm64_env.ctx, "broken")


def test_all_platforms_builds_what_the_base_list_offers(arm64_env):
    _base_list(arm64_env)
    ctx = arm64_env.context_dir()
    result = arm64_env.build(
        ctx, "FROM base\nRUN uname -m > /m\n", all_platforms=True, manifest="every"
    )
    assert sorted(result.platform_images) == ["linux/amd64", "linux/arm64"]
    assert sorted(_list_platforms(arm64_env, "every")) == ["linux/amd64", "linux/arm64"]


def test_one_platform_with_manifest_adds_to_the_list(arm64_env):
    _base_list(arm64_env)
    ctx = arm64_env.context_dir()
    arm64_env.build(ctx, "FROM base\n", platform="linux/arm64", manifest="one", tags=["one-img"])
    assert list(_list_platforms(arm64_env, "one")) == ["linux/arm64"]
    assert arm64_env.image("one-img").config.architecture == "arm64"
