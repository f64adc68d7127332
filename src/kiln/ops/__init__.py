"""Use cases every front end calls (build, pull, push, images, prune, save, load, ...). No printing, no HTTP. Must not import cli or api."""
