"""``--chown`` specs resolved in the container's passwd and group files."""

from __future__ import annotations

import pytest

from kiln.archive.safe_root import SafeRoot
from kiln.container.owner import resolve_chown
from kiln.errors import InvalidArgument


@pytest.fixture
def root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    with SafeRoot(str(tmp_path)) as r:
        yield r


@pytest.mark.parametrize(
    ("spec", "owner"),
    [
        ("app", (1000, 1001)),
        ("7", (7, 7)),
        ("7:8", (7, 8)),
        ("app:staff", (1000, 50)),
        (":1234", (0, 1234)),  # no user: root's, as buildah and BuildKit take it
        (":staff", (0, 50)),
        ("app:", (1000, 1001)),  # an empty group: as if none were given
        ("7:", (7, 7)),
    ],
)
def test_chown_specs(root, spec, owner):
    assert resolve_chown(root, spec) == owner


@pytest.mark.parametrize("spec", [":", "a:b:c", ":nogroup", "nobody"])
def test_chown_refusals(root, spec):
    with pytest.raises(InvalidArgument):
        resolve_chown(root, spec)
