"""Working containers (buildah's Builder): from, run, copy/add, config, mount, commit, rm. Must not import build, ops, cli, api."""
