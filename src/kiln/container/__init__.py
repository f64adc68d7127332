"""Working containers (buildah's Builder): from, run, copy/add, config, mount, commit, rm.
Must not import build, ops, cli, api.

A working container is a writable overlay snapshot over an image's layer chain plus the
image config being edited, persisted in the store (``ContainerRecord.state``, versioned
with ``kiln_container_version``). The Dockerfile engine and the CLI both drive it::

    from kiln.container import Builder

    b = Builder.from_image(ctx, "busybox", name=None, pull_policy="missing", puller=None)
    b = Builder.from_image(ctx, None)                      # scratch
    b = Builder.load(ctx, "busybox-working-container")     # name, ID prefix or mount path
    code = b.run(["sh", "-c", "echo hi"], RunOptions(...), user="1000")   # -> exit code
    out = b.copy(["src/*.txt"], "/app/", context_dir=".", chown="1000:1000", chmod="644",
                 from_root=None, keep_owner=False)         # -> CopyOutcome(digest, dests)
    # keep_owner: without chown, keep the source's uid/gid (Dockerfile COPY --from)
    out = b.add(["https://host/f.tgz", "local.tar.xz"], "/opt/")
    b.config.set_cmd(["sh"]); b.config.set_env("K", "V"); b.config.set_label("a", "b") ...
    b.add_history("/bin/sh -c #(nop) ENV K=V", empty_layer=True)
    b.save()                                               # persist config edits
    rec = b.commit("myimage:1", format="oci", timestamp=0, squash=False,
                   compression="gzip", omit_history=False, changes=["CMD [\\"sh\\"]"],
                   created_by=None, rm=False)              # -> store ImageRecord
    rec = b.commit_step(created_by="RUN ...", image_format="oci", compression="gzip",
                        timestamp=None)                    # commit, go on from the new image
    b.adopt_image(image_id)                                # drop changes, go on from an image
    b.set_config(editor)                                   # go on with a copy of editor's config
    b.set_pending_history(entries)                         # history the next commit writes first
    b.set_history_defaults(created_by="...", comment="...")  # its own entry's words
    with b.mounted() as rootfs: ...                        # merged rootfs for the duration
    path = b.mount(); b.unmount()                          # ``kiln mount`` / ``umount``
    b.delete()

``ctx`` is anything with ``.store`` and ``.snapshots`` (an ops ``Context``), or a ``Store``
(then pass ``snapshots=``). Pulling is the caller's: ``puller(ref, policy) -> image id``.
COPY/ADD follow Docker's rules exactly (``kiln.container.copy_add``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln.util.exports import lazy_exports

if TYPE_CHECKING:
    from kiln.util.choices import PULL_POLICIES

    from .builder import Builder
    from .config_edit import (
        ConfigEditor,
        expand_env,
        normalize_port,
        parse_duration,
        parse_exec_or_shell,
        parse_healthcheck,
        parse_json_or_words,
        split_key_value,
    )
    from .copy_add import CopyOutcome, copy_into
    from .records import find_record
    from .state import STATE_MARKER, STATE_VERSION, ContainerState

# public name -> the module that defines it. Imported on first use, so a module that needs
# one small part of this package (``kiln.container.paths``, ``.state``) does not pay for the
# builder and everything it imports (the store, the runtime, COPY/ADD, git sources).
_EXPORTS = {
    "PULL_POLICIES": "kiln.util.choices",
    "STATE_MARKER": "kiln.container.state",
    "STATE_VERSION": "kiln.container.state",
    "Builder": "kiln.container.builder",
    "ConfigEditor": "kiln.container.config_edit",
    "ContainerState": "kiln.container.state",
    "CopyOutcome": "kiln.container.copy_add",
    "copy_into": "kiln.container.copy_add",
    "expand_env": "kiln.container.config_edit",
    "find_record": "kiln.container.records",
    "normalize_port": "kiln.container.config_edit",
    "parse_duration": "kiln.container.config_edit",
    "parse_exec_or_shell": "kiln.container.config_edit",
    "parse_healthcheck": "kiln.container.config_edit",
    "parse_json_or_words": "kiln.container.config_edit",
    "split_key_value": "kiln.container.config_edit",
}

__all__ = [
    "PULL_POLICIES",
    "STATE_MARKER",
    "STATE_VERSION",
    "Builder",
    "ConfigEditor",
    "ContainerState",
    "CopyOutcome",
    "copy_into",
    "expand_env",
    "find_record",
    "normalize_port",
    "parse_duration",
    "parse_exec_or_shell",
    "parse_healthcheck",
    "parse_json_or_words",
    "split_key_value",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
