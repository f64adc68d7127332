"""``PullRequest``: one pull as a front end asked for it, parsed once.

``kiln pull``, the Docker and libpod pull routes, varlink's ``PullImage``, a build's
``FROM`` and ``kiln from --pull`` each turn what they were given into one of these with
:meth:`PullRequest.of` and hand it down; ``kiln.ops.file_transfer.pull``,
``kiln.ops.transfer.pull_image``, ``kiln.ops.registry.pull`` and
``kiln.ops.registry.ensure_image`` read it instead of each taking the same keywords.

It lives here, beside ``RegistryOptions``, because it is made of values from this layer
and below (``RegistryOptions``, ``kiln.oci.Platform``, ``kiln.util.choices.PullPolicy``)
and loads no httpx: a command or a build holds one without loading the registry client.
Front ends take it from ``kiln.ops.options`` (the CLI from ``kiln.ops.pull_options``).
"""

from __future__ import annotations

import threading
from dataclasses import field

from kiln.errors import InvalidArgument
from kiln.oci.platform import Platform
from kiln.registry.options import RegistryOptions
from kiln.util.choices import PullPolicy
from kiln.util.lazy_dataclass import dataclass

__all__ = ["PullRequest", "platform_choice"]


@dataclass(frozen=True)
class PullRequest:
    """What to pull and how.

    ``source``: the image as given: ``REF`` or ``docker://REF`` (a registry), or a file
    transport (``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:REF]``,
    ``dir:DIR``); a name with no transport is a registry reference.
    ``policy``, ``platform`` (None: the host's), ``all_tags`` and ``options`` are a
    registry pull's; ``all_platforms`` keeps a whole manifest list (registries, ``oci:``,
    ``oci-archive:``). ``quiet``: the front end shows the result only (the use cases emit
    the same events either way; rendering them is the front end's). ``cancel``: set from
    any thread, the pull stops at its next progress event (every MiB of a blob) and
    raises ``Cancelled``, leaving nothing of it in the store (a registry that sends
    nothing is bounded by the registry's timeouts instead).
    """

    source: str
    policy: PullPolicy = PullPolicy.ALWAYS
    platform: Platform | None = None
    all_tags: bool = False
    all_platforms: bool = False
    options: RegistryOptions = field(default_factory=RegistryOptions)
    quiet: bool = False
    cancel: threading.Event | None = None

    @classmethod
    def of(
        cls,
        source: str,
        *,
        policy: str | None = None,
        platform: str | None = None,
        arch: str | None = None,
        os: str | None = None,
        variant: str | None = None,
        all_tags: bool = False,
        all_platforms: bool = False,
        options: RegistryOptions | None = None,
        quiet: bool = False,
        cancel: threading.Event | None = None,
    ) -> PullRequest:
        """A request from the words a user gave: ``policy`` in any of ``PullPolicy``'s
        spellings (None: ``always``); ``platform`` (``os/arch[/variant]``) or any of
        ``arch``/``os``/``variant`` (the rest from the host's); ``options`` None: the
        defaults. Words that do not parse, or ``platform`` with ``arch``/``os``/``variant``,
        are ``InvalidArgument``."""
        return cls(
            source=source,
            policy=PullPolicy.ALWAYS if policy is None else PullPolicy.parse(policy),
            platform=platform_choice(platform, arch, os, variant),
            all_tags=bool(all_tags),
            all_platforms=bool(all_platforms),
            options=options if options is not None else RegistryOptions(),
            quiet=bool(quiet),
            cancel=cancel,
        )


def platform_choice(
    platform: str | None, arch: str | None, os: str | None, variant: str | None
) -> Platform | None:
    """The platform ``--platform`` or ``--arch``/``--os``/``--variant`` ask for (the rest
    from the host's); None when none is given. ``PullRequest.of``'s rule, and
    ``manifest add``'s for picking an image from a list."""
    if platform:
        if arch or os or variant:
            raise InvalidArgument("--platform cannot be combined with --arch, --os or --variant")
        return Platform.parse(platform)
    if not (arch or os or variant):
        return None
    host = Platform.host()
    return Platform.parse(
        "/".join(p for p in (os or host.os, arch or host.architecture, variant or "") if p)
    )
