"""Run one process in a prepared rootfs: OCI runtime spec, runc invocation, chroot isolation, mounts. The only package that spawns container processes. Must not import store, image or above."""
