"""Dockerfile engine: parse -> typed instructions -> stage plan -> execute on kiln.container. Must not import ops, cli, api."""
