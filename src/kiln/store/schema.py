"""The metadata schema as an ordered list of migrations.

``PRAGMA user_version`` holds how many migrations a database has had. Opening
applies the missing ones (each in its own ``BEGIN IMMEDIATE`` transaction, so
two processes opening a fresh store at once are safe) and refuses a database
written by a newer kiln. Append new migrations; never edit a released one.
"""

from __future__ import annotations

V1 = """
CREATE TABLE images (
    id TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    manifest_media_type TEXT NOT NULL,
    config_digest TEXT NOT NULL,
    created TEXT NOT NULL,
    size INTEGER NOT NULL,
    platform TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL
);
CREATE INDEX images_manifest ON images(manifest_digest);

CREATE TABLE names (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX names_image ON names(image_id);

CREATE TABLE repo_digests (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    repo_digest TEXT NOT NULL,
    PRIMARY KEY (image_id, repo_digest)
);
CREATE INDEX repo_digests_digest ON repo_digests(repo_digest);

CREATE TABLE layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT,
    blob_digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    uncompressed_size INTEGER NOT NULL
);

CREATE TABLE image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    chain_id TEXT NOT NULL REFERENCES layers(chain_id),
    PRIMARY KEY (image_id, position)
);
CREATE INDEX image_layers_chain ON image_layers(chain_id);

CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT REFERENCES images(id),
    state TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX containers_image ON containers(image_id);

CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    expires REAL NOT NULL
);

CREATE TABLE lease_resources (
    lease_id TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'image')),
    ref TEXT NOT NULL,
    PRIMARY KEY (lease_id, kind, ref)
);

CREATE TABLE build_cache (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    created REAL NOT NULL,
    last_used REAL NOT NULL
);
CREATE INDEX build_cache_image ON build_cache(image_id);

CREATE TABLE checksum_cache (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    digest TEXT NOT NULL
);
"""

# the config's labels as a JSON object, so listing images reads no configs; NULL: not
# recorded yet (images stored before V2), filled in by the first listing that reads them
V2 = """
ALTER TABLE images ADD COLUMN labels TEXT;
"""

# GC marks from each image's own manifest, never from the one-blob-per-chain ``layers`` row:
# - image_layers.blob_digest: the blob the image's manifest names for that layer (two images
#   may hold one chain ID in two encodings); NULL: stored before V3, filled from the image's
#   manifest when the store opens (``Images.fill_layer_blobs``)
# - containers.snapshot_key: the active snapshot a working container holds (a GC root for
#   the snapshotter's sweep), copied out of the container state it used to live in only
# - released: blobs and unpacked layers (chain IDs) of images that were deleted; GC sweeps
#   those no root holds even inside the grace period, unless they were reused since ``at``
V3 = """
ALTER TABLE image_layers ADD COLUMN blob_digest TEXT;
ALTER TABLE containers ADD COLUMN snapshot_key TEXT;
UPDATE containers SET snapshot_key = json_extract(state, '$.snapshot_key')
    WHERE json_valid(state) AND json_type(state, '$.snapshot_key') = 'text';
CREATE TABLE released (
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'layer')),
    ref TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (kind, ref)
);
"""


# manifest lists and image indexes as named records beside images (``kiln.store.indexes``):
# - indexes: one list; ``id`` is stable across edits (as podman's list IDs), ``digest`` names
#   the stored index blob of its current content
# - index_names: a name points at an image or at an index, never both (tagging moves it)
# - index_blobs: every blob the index keeps through GC (child manifests, their configs and
#   layers), recorded when the index is put, so GC marks through it without reading blobs
V4 = """
CREATE TABLE indexes (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    created TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX indexes_digest ON indexes(digest);
CREATE TABLE index_names (
    name TEXT PRIMARY KEY,
    index_id TEXT NOT NULL REFERENCES indexes(id) ON DELETE CASCADE
);
CREATE INDEX index_names_index ON index_names(index_id);
CREATE TABLE index_blobs (
    index_id TEXT NOT NULL REFERENCES indexes(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (index_id, digest)
);
CREATE INDEX index_blobs_digest ON index_blobs(digest);
"""

# build history (issue 13), metadata only: nothing here is a GC root and nothing references
# an image, so GC and image removal never look at these tables (bounded by trimming on insert)
# - cache_inputs: what went into each build-cache key (kiln.build.cache_key.step_inputs, zlib
#   JSON), for ``kiln build --explain``; ``locator`` names the step (context, file, stage, step)
# - build_records: one row per build (kiln.build.record), for ``kiln build history``/``report``
V5 = """
CREATE TABLE IF NOT EXISTS cache_inputs (
    key TEXT PRIMARY KEY,
    locator TEXT NOT NULL,
    parent TEXT NOT NULL,
    instruction TEXT NOT NULL,
    instruction_digest TEXT NOT NULL,
    created REAL NOT NULL,
    inputs BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_inputs_locator ON cache_inputs(locator, created);
CREATE INDEX IF NOT EXISTS cache_inputs_parent ON cache_inputs(parent, created);
CREATE INDEX IF NOT EXISTS cache_inputs_instruction ON cache_inputs(instruction_digest, created);
CREATE TABLE IF NOT EXISTS build_records (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    ended REAL NOT NULL,
    status TEXT NOT NULL,
    image_id TEXT NOT NULL DEFAULT '',
    names TEXT NOT NULL DEFAULT '',
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS build_records_created ON build_records(created);
"""

# lineage, so ``image inspect``'s Parent is a few indexed lookups (kiln.store.lineage):
# each image's top chain ID, layer count and a rolling digest of its history (NULL: not
# recorded yet, filled from its config when the store opens); the partial index lets the
# V3 fill-in on every open find its rows without scanning image_layers
V6 = """
ALTER TABLE images ADD COLUMN top_chain TEXT;
ALTER TABLE images ADD COLUMN layer_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN history_key TEXT;
UPDATE images SET
    layer_count = (SELECT COUNT(*) FROM image_layers il WHERE il.image_id = images.id),
    top_chain = (SELECT chain_id FROM image_layers il WHERE il.image_id = images.id
                 ORDER BY position DESC LIMIT 1);
CREATE INDEX images_top_chain ON images(top_chain, added, id);
CREATE INDEX images_history_key ON images(history_key);
CREATE INDEX image_layers_blob_missing ON image_layers(image_id) WHERE blob_digest IS NULL;
"""

# the process holding each lease (kiln.util.process_owner): a killed kiln's leases are
# cleared by the next command instead of holding images from prune until they expire
V7 = """
CREATE TABLE IF NOT EXISTS lease_owners (
    lease_id TEXT PRIMARY KEY REFERENCES leases(id) ON DELETE CASCADE,
    owner TEXT NOT NULL
);
"""

# the image event journal every kiln process on the store appends to (kiln.store.events):
# `docker events` and `kiln events` read the operations of all of them
V8 = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    action TEXT NOT NULL,
    image TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    attributes TEXT NOT NULL DEFAULT '{}'
);
"""

# an image's parent by history (kiln.store.lineage) searched on both of its conditions at
# once: its history is one of the child's prefixes and its top chain one of the child's
# chains; the index on history_key alone read every image sharing a history prefix (every
# rebuild of one Dockerfile) and sorted them. One transaction with the version, as every
# migration: a crash leaves V8 or V9, never half
V9 = """
CREATE INDEX IF NOT EXISTS images_lineage ON images(history_key, top_chain, added, id);
DROP INDEX IF EXISTS images_history_key;
"""

# podman's parent/child rule without reading configs (kiln.store.lineage): the keys of the
# history prefixes a parent of the image could have (NULL: not recorded yet, filled from
# the config when the store opens, found through the partial index). Parents are searched
# by top chain since: V9's index on the history key has no reader left
V10 = """
ALTER TABLE images ADD COLUMN parent_keys BLOB;
CREATE INDEX IF NOT EXISTS images_parent_keys_missing ON images(id) WHERE parent_keys IS NULL;
DROP INDEX IF EXISTS images_lineage;
"""

# an image's parent searched by its top chains and the history prefixes it could have at
# once (kiln.store.lineage.parent_of): by top chain alone an inspect read every image on
# the image's base layer (10,000 images FROM one base: 15 ms of CPU per inspect)
V11 = """
CREATE INDEX IF NOT EXISTS images_parent_search ON images(top_chain, history_key, added, id);
"""

MIGRATIONS: list[str] = [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11]
