"""Mount descriptions: what to mount, never mounted here (see ``mount.py``)."""

from __future__ import annotations

import os
from dataclasses import field, replace

from kiln.util.lazy_dataclass import dataclass
from kiln.util.rootless import in_user_namespace

#: overlay options kiln wants; each is used only if this kernel's overlay knows it
OVERLAY_OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off")
#: no syncs of the upper file system (unmount and syncfs skip them): for an upper that is
#: thrown away, or recorded by its owner as not yet durable (``Snapshotter.commit``);
#: dropped on kernels that refuse it (before 5.10)
VOLATILE = "volatile"
#: the same in a user namespace (rootless, kernel >= 5.11): overlayfs' xattrs become
#: ``user.overlay.*``, which an unprivileged mounter can write; redirect_dir cannot be set
#: there (EPERM) and userxattr implies "nofollow", so a renamed lower directory is copied up
#: whole, as with "off"
USERNS_OVERLAY_OPTIONS = ("userxattr", "index=off", "metacopy=off")
_PARAMS = "/sys/module/overlay/parameters"
#: the most lower directories one overlay takes (the kernel's OVL_MAX_STACK)
MAX_LOWERS = 500


@dataclass(frozen=True)
class MountSpec:
    """One mount. ``type`` is "overlay" (``lowers`` top first, ``upper``/``work`` for
    a writable one) or "bind" (``source`` is a plain directory; copy driver)."""

    type: str
    source: str
    options: tuple[str, ...] = ()
    lowers: tuple[str, ...] = ()
    upper: str | None = None
    work: str | None = None
    #: the snapshotter's cached overlay probe; removed if this overlay fails to mount
    probe_marker: str | None = field(default=None, compare=False, repr=False)

    @property
    def readonly(self) -> bool:
        return "ro" in self.options

    @property
    def volatile(self) -> bool:
        return VOLATILE in self.options

    def as_volatile(self) -> MountSpec:
        """This writable overlay mounted ``volatile`` (anything else is returned as it is)."""
        if self.type != "overlay" or not self.upper or self.volatile:
            return self
        return replace(self, options=(*self.options, VOLATILE))

    def with_bottom(self, lower: str) -> MountSpec:
        """This overlay with ``lower`` beneath its lowest layer: its entries show only where
        no layer above has the path. Anything else, or a full stack, is returned as it is."""
        if self.type != "overlay" or len(self.lowers) >= MAX_LOWERS:
            return self
        return replace(self, lowers=(*self.lowers, lower))

    def without(self, option: str) -> MountSpec:
        return replace(self, options=tuple(o for o in self.options if o != option))

    def overlay_data(self, relative_to: str | None = None) -> str:
        """The classic ``mount -o`` string (paths relative to ``relative_to`` if given)."""

        def p(path: str) -> str:
            path = os.path.relpath(path, relative_to) if relative_to else path
            return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")

        parts = ["lowerdir=" + ":".join(p(x) for x in self.lowers)]
        if self.upper:
            parts.append("upperdir=" + p(self.upper))
        if self.work:
            parts.append("workdir=" + p(self.work))
        parts.extend(o for o in self.options if o != "ro")
        return ",".join(parts)


def supported_overlay_options() -> tuple[str, ...]:
    """The subset of ``OVERLAY_OPTIONS`` (``USERNS_OVERLAY_OPTIONS`` in a user namespace)
    this kernel accepts (by its module parameters; ``userxattr`` is a mount option only)."""
    wanted = USERNS_OVERLAY_OPTIONS if in_user_namespace() else OVERLAY_OPTIONS
    if not os.path.isdir(_PARAMS):
        return wanted  # module not loaded yet: mount() drops any it refuses
    return tuple(
        o for o in wanted if o == "userxattr" or os.path.exists(f"{_PARAMS}/{o.split('=')[0]}")
    )
