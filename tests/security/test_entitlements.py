"""Privileges a Containerfile asks for are granted only by whoever runs the build
(BuildKit's entitlements, ``--allow``): a Dockerfile's ``RUN --network=host`` does not
override ``--network none``, and ``RUN --security=insecure`` is never silently sandboxed."""

from __future__ import annotations

import pytest

from build_fixtures import ROOT_MARKS, build_env  # noqa: F401
from fixtures_images import busybox_image, busybox_rootfs_tar, kiln_store  # noqa: F401
from kiln.errors import InvalidArgument
from kiln.runtime import RunSettings

pytestmark = ROOT_MARKS

CAPS = "FROM busybox\nRUN {flag}grep CapEff /proc/self/status > /caps\n"


def caps_of(build_env, flag: str, **options) -> str:  # noqa: F811
    ctx = build_env.context_dir(flag.strip("-=") or "plain")
    result = build_env.build(ctx, CAPS.format(flag=flag), **options)
    return build_env.files(result.image_id)["caps"].decode().split()[1]


def test_host_network_is_refused_without_its_entitlement(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    with pytest.raises(InvalidArgument, match="needs the network.host entitlement"):
        build_env.build(
            ctx, "FROM busybox\nRUN --network=host true\n", run=RunSettings(network="none")
        )
    assert build_env.store.list_images()[0].names == ["docker.io/library/busybox:latest"]
    assert len(build_env.store.list_images()) == 1, "no image was left by the refused build"


def test_host_network_with_its_entitlement_sees_the_host_interfaces(build_env):  # noqa: F811
    ctx = build_env.context_dir()
    text = "FROM busybox\nRUN --network=host ls /sys/class/net > /nets\n"
    result = build_env.build(ctx, text, run=RunSettings(network="none"), allow=("network.host",))
    nets = build_env.files(result.image_id)["nets"].decode().split()
    assert len(nets) > 1 or nets != ["lo"], nets


def test_insecure_runs_with_every_capability_only_when_granted(build_env):  # noqa: F811
    with pytest.raises(InvalidArgument, match="needs the security.insecure entitlement"):
        caps_of(build_env, "--security=insecure ")
    sandboxed = int(caps_of(build_env, ""), 16)
    insecure = int(caps_of(build_env, "--security=insecure ", allow=("security.insecure",)), 16)
    assert insecure & sandboxed == sandboxed and insecure != sandboxed
    assert insecure >> 21 & 1, "CAP_SYS_ADMIN is granted"
