"""OCI and Docker vocabulary: digests, media types, descriptors, manifests, indexes, image config, references, platforms. Pure frozen data, no I/O. Imports nothing from kiln but kiln.errors."""
