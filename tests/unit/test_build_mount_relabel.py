"""``RUN --mount`` options buildah accepts for SELinux (``z``, ``Z``, ``relabel=``) and an
empty ``from=``, read as buildah reads them; nonsense is refused with a clear message."""

from __future__ import annotations

import pytest

from kiln.build.cache_key import instruction_fields
from kiln.build.instructions import instructions_from_nodes
from kiln.build.mounts import parse_mount
from kiln.build.parser import parse_string
from kiln.errors import InvalidArgument


@pytest.mark.parametrize(
    ("spec", "relabel"),
    [
        ("type=bind,target=/b,z", "shared"),
        ("type=bind,target=/b,Z", "private"),
        ("type=cache,target=/c,z", "shared"),
        ("type=cache,target=/c,Z", "private"),
        ("type=cache,target=/c,z=true", "shared"),
        ("type=cache,target=/c,z=false", None),
        ("type=cache,target=/c,relabel=shared", "shared"),
        ("type=bind,target=/c,relabel=private", "private"),
        ("type=cache,target=/c", None),
    ],
)
def test_selinux_options_are_accepted_for_bind_and_cache(spec, relabel):
    assert parse_mount(spec).relabel == relabel


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=cache,target=/c,relabel=bogus", "relabel=shared"),
        ("type=cache,target=/c,relabel=", "relabel=shared"),
        ("type=tmpfs,target=/t,z", "not to type=tmpfs"),
        ("type=secret,id=s,Z", "not to type=secret"),
        ("type=cache,target=/c,z=maybe", "invalid value for z"),
        ("type=cache,target=/c,from=", "from= of a mount is empty"),
        ("type=bind,target=/c,from=", "from= of a mount is empty"),
    ],
)
def test_nonsense_is_refused(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_mount(spec)


def test_relabelling_is_not_part_of_the_cache_key():
    def key(flags: str):
        text = f"FROM x\nRUN --mount=type=cache,target=/c{flags} true\n"
        return instruction_fields(instructions_from_nodes(parse_string(text).nodes)[1])

    assert key(",z") == key("") == key(",relabel=private")
    assert key(",sharing=locked") != key("")
