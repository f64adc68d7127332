"""A script that passes one string where a list of them goes gets one clear error before
anything happens: ``remove_images(ctx, "app")`` removed the images ``a`` and ``p``."""

from __future__ import annotations

import pytest

import kiln

pytest_plugins = ["fixtures_images"]

CALLS = {
    "remove_images": lambda ctx: kiln.remove_images(ctx, "app"),
    "save_images": lambda ctx: kiln.save_images(ctx, "app", "/nonexistent/x.tar"),
    "remove_containers": lambda ctx: kiln.remove_containers(ctx, "box"),
    "run_in_container": lambda ctx: kiln.run_in_container(ctx, "box", "ls"),
    "run_in_container env": lambda ctx: kiln.run_in_container(ctx, "box", ["ls"], env="A=1"),
    "copy_to_container": lambda ctx: kiln.copy_to_container(ctx, "box", "file", "/"),
    "create_manifest_list": lambda ctx: kiln.create_manifest_list(ctx, "list", "app"),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_string_for_a_list_is_refused_and_nothing_happens(kiln_store, busybox_image, call):
    with kiln.open_context(kiln_store.root) as ctx:
        kiln.tag_image(ctx, "busybox", "a", "p")
        with pytest.raises(kiln.InvalidArgument, match=r": \w+ is a list of strings, not a str$"):
            CALLS[call](ctx)
        assert kiln.image_exists(ctx, "a") and kiln.image_exists(ctx, "p")
        assert not kiln.list_containers(ctx, all=True)


def test_a_list_of_strings_is_taken_as_before(kiln_store, busybox_image):
    with kiln.open_context(kiln_store.root) as ctx:
        kiln.tag_image(ctx, "busybox", "a")
        assert kiln.remove_images(ctx, ("a",)).untagged == ["localhost/a:latest"]


@pytest.mark.parametrize(
    ("value", "said"),
    [("API_TOKEN=s3cret", "not a str"), (["API_TOKEN=s3cret", 7], "not a list holding an int"),
     (7, "not an int")],
)  # fmt: skip
def test_the_error_names_the_type_not_the_value(value, said):
    """The value was in the message: an env entry is often a secret, and the message goes
    to logs and API answers."""
    from kiln.util.arguments import string_list

    with pytest.raises(kiln.InvalidArgument) as refused:
        string_list(value, "run_in_container: env")
    assert str(refused.value) == f"run_in_container: env is a list of strings, {said}"
