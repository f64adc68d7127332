"""--change instructions for kiln import/commit."""

from __future__ import annotations

import pytest

from kiln.errors import InvalidArgument
from kiln.image.changes import apply_changes
from kiln.oci.config import RuntimeConfig


def test_json_and_shell_forms():
    cfg = apply_changes(RuntimeConfig(), ['CMD ["/bin/sh", "-c", "echo hi"]', "ENTRYPOINT top -b"])
    assert cfg.cmd == ("/bin/sh", "-c", "echo hi")
    assert cfg.entrypoint == ("/bin/sh", "-c", "top -b")


def test_env_label_expose_volume_user_workdir_stopsignal_onbuild():
    cfg = apply_changes(
        RuntimeConfig(env=("PATH=/bin",)),
        [
            'ENV A=1 B="two words"',
            "ENV LEGACY some value",
            "LABEL org.x=y 'quoted key'=v",
            "EXPOSE 80 53/udp",
            'VOLUME ["/data"]',
            "VOLUME /a /b",
            "USER 1000:1000",
            "WORKDIR /srv",
            "WORKDIR app",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN echo hi",
        ],
    )
    assert cfg.env == ("PATH=/bin", "A=1", "B=two words", "LEGACY=some value")
    assert cfg.labels == {"org.x": "y", "quoted key": "v"}
    assert cfg.exposed_ports == ("80/tcp", "53/udp")
    assert cfg.volumes == ("/data", "/a", "/b")
    assert cfg.user == "1000:1000"
    assert cfg.working_dir == "/srv/app"
    assert cfg.stop_signal == "SIGINT"
    assert cfg.on_build == ("RUN echo hi",)


def test_env_replaces_existing_key():
    cfg = apply_changes(RuntimeConfig(env=("PATH=/bin", "A=0")), ["ENV A=1"])
    assert cfg.env == ("PATH=/bin", "A=1")


@pytest.mark.parametrize(
    "change",
    ["RUN echo hi", "FROM x", "EXPOSE http", "EXPOSE 80/foo", "LABEL novalue", "USER", ""],
)
def test_refused_with_message(change):
    with pytest.raises(InvalidArgument) as err:
        apply_changes(RuntimeConfig(), [change])
    assert "--change" in str(err.value)
