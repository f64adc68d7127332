"""The embedded store: content-addressed blobs, SQLite metadata, leases, GC. Only store and snapshot write under the state root. Must not import image, container, build, ops, cli, api."""
