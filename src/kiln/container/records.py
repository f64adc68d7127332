"""A working container's record in the store: finding one (``find_record``), inserting a new
one under a free name (``insert_record``), and the base it starts from (``resolve_base``,
``scratch_config``). ``Builder.from_image`` and ``Builder.load`` use these.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from kiln.errors import AlreadyExists, InvalidArgument, NotFound
from kiln.oci import ImageConfig, Platform
from kiln.store import ContainerRecord, ImageRecord, Store

from .naming import default_name
from .state import ContainerState

#: ``puller(reference, policy) -> image id``: fetches an image into the store (given by ops)
Puller = Callable[[str, str], str]


def scratch_config(platform: Platform | None = None) -> ImageConfig:
    """An empty rootfs's config: ``platform``'s, by default the host's."""
    plat = platform or Platform.host()
    return ImageConfig(architecture=plat.architecture, os=plat.os or "linux", variant=plat.variant)


def resolve_base(
    store: Store,
    image: str,
    policy: str,
    puller: Puller | None,
    platform: Platform | None = None,
) -> ImageRecord:
    """The image a new container starts from, pulled by ``puller`` as ``policy`` says.
    ``platform``: a list's name gives its image for it, and a local image of another
    platform counts as missing (as buildah from --platform has it); None: the host's."""
    local: ImageRecord | None
    other = ""  # why a local image does not do
    try:
        local = store.resolve_image(image, platform)
    except NotFound as exc:
        local = None
        if "image not known" not in str(exc):  # a list without the platform's image
            other = str(exc)
    if (
        platform
        and local
        and local.platform
        and not platform.matches(Platform.parse(local.platform))
    ):
        other = f"the local one is {local.platform}"
        local = None
    if policy == "never" or (policy == "missing" and local is not None):
        if local is None:
            note = f" for {platform} ({other})" if other else ""
            raise NotFound(f"{image}: image not known locally{note} and --pull=never was given")
        return local
    if puller is None:
        if local is None:
            raise NotFound(f"{image}: image not known; pull it first (kiln pull {image})")
        return local
    return store.get_image(puller(image, policy))


def insert_record(
    store: Store,
    cid: str,
    name: str | None,
    image_name: str,
    base: ImageRecord | None,
    state: ContainerState,
) -> ContainerRecord:
    """Store the new container ``cid`` as ``name`` (None: a free default name)."""
    image = None if base is None else image_name

    def taken(candidate: str) -> bool:
        try:
            store.find_container(candidate)
        except NotFound:
            return False
        except InvalidArgument:
            return True
        return True

    for _ in range(100):
        chosen = name or default_name(image, taken)
        record = ContainerRecord(
            cid,
            chosen,
            base.id if base else None,
            state.to_json(),
            time.time(),
            snapshot_key=state.snapshot_key,
        )
        try:
            store.put_container(record)
            return record
        except AlreadyExists:
            if name:
                raise
    raise AlreadyExists("could not find a free container name; pass --name")


def _no_container(store: Store, name: str) -> NotFound:
    """``name`` is no container; when it is an image (``kiln run IMAGE CMD``, podman's habit),
    the error says how to get a container of it."""
    try:
        store.resolve(name)
    except (NotFound, InvalidArgument):
        return NotFound(f"{name}: no such container")
    return NotFound(
        f"{name}: no such container, but an image of that name: working containers are made "
        f"of images with `kiln from {name}`, as in buildah"
    )


def find_record(store: Store, name_or_id: str) -> ContainerRecord:
    """By name, ID, unique ID prefix, or the path it is mounted at."""
    try:
        return store.find_container(name_or_id)
    except NotFound:
        if not name_or_id.startswith("/"):
            raise _no_container(store, name_or_id) from None
    wanted = os.path.realpath(name_or_id)
    for record in store.list_containers():
        mp = record.state.get("mount_point") if isinstance(record.state, dict) else None
        if mp and os.path.realpath(mp) == wanted:
            return record
    raise NotFound(f"{name_or_id}: no such container")
