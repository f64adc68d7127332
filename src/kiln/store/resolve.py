"""Find an image the ways users name one (as docker and podman accept them).

Accepted, tried in this order:

- ``sha256:<64 hex>`` or a bare 64-hex image ID;
- ``name@sha256:<digest>``: an image with that repo digest, else one whose
  manifest digest it is (preferring one named in the same repository);
- a name; short names are normalised as Docker does (``busybox`` ->
  ``docker.io/library/busybox:latest``) and then tried as ``localhost/<name>``,
  where podman and buildah put locally built images;
- a manifest list's name: the list's image for the platform asked for (default: this
  machine's), as podman resolves one (``kiln run LIST``, ``FROM LIST``, ``kiln save LIST``);
- a unique image-ID prefix of at least 3 hex digits (``sha256:`` optional);
- a manifest list's ID or unique ID prefix (as ``kiln images`` lists it): its image, as
  for its name.

``resolve`` answers what a name means when it may be an image or a manifest list.

Unknown: ``NotFound("<input>: image not known")``; an ambiguous prefix:
``InvalidArgument`` saying how many images it matches.
"""

from __future__ import annotations

import re

from kiln.errors import InvalidArgument, NotFound
from kiln.oci import Index, Platform, Reference
from kiln.oci.reference import is_short_name
from kiln.store.db import Database
from kiln.store.images import Images
from kiln.store.indexes import Indexes
from kiln.store.records import ImageRecord, IndexRecord
from kiln.util.lazy_pattern import lazy_pattern

_FULL_ID = re.compile(r"^(?:sha256:)?([a-f0-9]{64})$")
_PREFIX = lazy_pattern(r"^(?:sha256:)?([a-f0-9]{3,63})$")
MIN_PREFIX = 3


class Resolver:
    """Names, digests and ID prefixes to images (and lists), over the image and index
    roles."""

    def __init__(self, db: Database, images: Images, indexes: Indexes):
        self.db = db
        self._images = images
        self._indexes = indexes

    def resolve_image(self, name_or_id: str, platform: Platform | str | None = None) -> ImageRecord:
        value = name_or_id.strip()
        m = _FULL_ID.match(value)
        if m:
            try:
                return self._images.get_image("sha256:" + m.group(1))
            except NotFound:  # a list's ID, as its name: the list's image (as podman)
                if not self.db.one("SELECT 1 FROM indexes WHERE id=?", ("sha256:" + m.group(1),)):
                    raise
                return self._images.get_image(
                    self._list_image(value, "sha256:" + m.group(1), platform)
                )
        rec = self._by_reference(value)
        if rec is not None:
            return rec
        index_id = self._indexes.by_reference(value)
        image_id = None if index_id is None else self._list_image(value, index_id, platform)
        if image_id is None:
            image_id = self._by_prefix(value)
        if image_id is None:  # the ID prefix `kiln images` shows for a list
            index_id = self._indexes.by_prefix(value)
            image_id = None if index_id is None else self._list_image(value, index_id, platform)
        if image_id is None:
            raise NotFound(f"{name_or_id}: image not known")
        return self._images.get_image(image_id)

    def resolve(self, name_or_id: str) -> ImageRecord | IndexRecord:
        """What a name means: an image or a list, tried as ``resolve_image`` tries
        (full ID, then name or ``name@digest``, then ID prefix; a name is never both;
        a prefix matching an image and a list is ambiguous). ``NotFound`` if neither."""
        value = name_or_id.strip()
        full = _FULL_ID.match(value)
        if full:
            bare = full.group(1)
            if self.db.one("SELECT 1 FROM images WHERE id=?", ("sha256:" + bare,)):
                return self._images.get_image(bare)
            if self.db.one("SELECT 1 FROM indexes WHERE id=?", ("sha256:" + bare,)):
                return self._indexes.get_index(bare)
            raise NotFound(f"{name_or_id}: image not known")
        rec = self._by_reference(value)
        if rec is not None:
            return rec
        index_id = self._indexes.by_reference(value)
        if index_id is not None:
            return self._indexes.get_index(index_id)
        image_id = self._by_prefix(value)
        index_id = self._indexes.by_prefix(value)
        if image_id is not None and index_id is not None:
            raise InvalidArgument(
                f"{value}: ambiguous ID prefix: it matches an image and a manifest list; "
                "give more characters of the ID"
            )
        if image_id is not None:
            return self._images.get_image(image_id)
        if index_id is not None:
            return self._indexes.get_index(index_id)
        raise NotFound(f"{name_or_id}: image not known")

    def _by_reference(self, value: str) -> ImageRecord | None:
        """The image a name or ``name@digest`` means; a name costs one statement."""
        try:
            ref = Reference.parse(value)
        except InvalidArgument:
            if _PREFIX().match(value):
                return None
            raise
        if ref.digest:
            image_id = self._by_digest(ref, is_short_name(value))
            return None if image_id is None else self._images.get_image(image_id)
        candidates = [str(ref)]
        if is_short_name(value):
            candidates.append(str(Reference.parse("localhost/" + value)))
        for name in candidates:
            rec = self._images.image_named(name)
            if rec is not None:
                return rec
        return None

    def _list_image(self, value: str, index_id: str, platform: Platform | str | None) -> str:
        """A manifest list (by name or ID) stands for its image for ``platform`` (default:
        this machine's), as podman resolves one; NotFound if the list has none stored."""
        rec = self._indexes.get_index(index_id)
        want = Platform.parse(platform) if isinstance(platform, str) else platform
        want = want or Platform.host()
        index = Index.parse(self._indexes.index_bytes(rec), rec.media_type)
        try:
            chosen = index.select(want)
        except NotFound as exc:
            raise NotFound(f"{value}: {exc}") from None
        row = self.db.one(
            "SELECT id FROM images WHERE manifest_digest=? ORDER BY added", (str(chosen.digest),)
        )
        if row is None:
            raise NotFound(
                f"{value}: the manifest list's image for {want} ({chosen.digest}) is not in "
                "local storage; pull it, or push the list and pull it again"
            )
        return row[0]

    def _by_digest(self, ref: Reference, short: bool) -> str | None:
        names = [ref.name]
        if short:
            names.append(Reference.parse("localhost/" + ref.path.removeprefix("library/")).name)
        for name in names:
            row = self.db.one(
                "SELECT image_id FROM repo_digests WHERE repo_digest=?", (f"{name}@{ref.digest}",)
            )
            if row is not None:
                return row[0]
        rows = self.db.query(
            "SELECT id FROM images WHERE manifest_digest=? ORDER BY added", (ref.digest,)
        )
        if not rows:
            return None
        for r in rows:
            named = self.db.query(
                "SELECT name FROM names WHERE image_id=? AND (name=? OR name LIKE ?)",
                (r[0], ref.name, ref.name + ":%"),
            )
            if named:
                return r[0]
        return rows[0][0]

    def _by_prefix(self, value: str) -> str | None:
        m = _PREFIX().match(value)
        if not m:
            return None
        prefix = m.group(1)
        rows = self.db.query(
            "SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT 1000",
            (f"sha256:{prefix}", f"sha256:{prefix}g"),
        )
        if len(rows) > 1:
            raise InvalidArgument(
                f"{value}: ambiguous image ID prefix: it matches {len(rows)} images; "
                "give more characters of the ID"
            )
        return rows[0][0] if rows else None
