"""``BuildOptions`` made by a script: a string where a list of them goes, or a number among
build arguments, is one clear error when the options are made, not a build that tags
``a``, ``p`` and ``p`` or fails deep inside."""

from __future__ import annotations

import pytest

from kiln import BuildOptions, InvalidArgument


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({"tags": "app"}, "BuildOptions.tags is a list of strings, not a str"),
        ({"platforms": "linux/amd64"}, "BuildOptions.platforms is a list of strings, not a str"),
        (
            {"dockerfiles": ["Dockerfile", None]},
            "BuildOptions.dockerfiles is a list of strings, not a list holding a NoneType",
        ),
        (
            {"build_args": {"VERSION": 2}},
            "BuildOptions.build_args maps strings to strings, not 'VERSION' to an int",
        ),
        (
            {"build_args": {"TOKEN": b"s3cret"}},
            "BuildOptions.build_args maps strings to strings, not 'TOKEN' to a bytes",
        ),
        (
            {"build_args": ["TOKEN=s3cret"]},
            "BuildOptions.build_args maps strings to strings, not a list",
        ),
        ({"labels": {1: "x"}}, "BuildOptions.labels maps strings to strings, not an int to a str"),
    ],
)
def test_a_wrong_type_in_build_options_is_invalid_argument(given, error):
    with pytest.raises(InvalidArgument) as caught:
        BuildOptions(**given)
    assert str(caught.value) == error


def test_lists_and_mappings_of_strings_are_taken_as_given():
    opts = BuildOptions(tags=["app:1", "app:latest"], build_args={"VERSION": "2"},
                        platforms=["linux/amd64"], allow=("network.host",))  # fmt: skip
    assert (opts.tags, opts.build_args, opts.platforms) == (
        ["app:1", "app:latest"], {"VERSION": "2"}, ["linux/amd64"])  # fmt: skip
