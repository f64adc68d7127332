"""The kiln command: lazy command table, thin verb modules, rendering (rich on a TTY,
plain lines otherwise, JSON on request).

Adding a verb is one file, ``kiln/cli/commands/<verb>.py`` (``from_.py`` is
``kiln from``; a sub-package such as ``commands/image/`` is a nested group)::

    \"\"\"kiln frobnicate: what it does.\"\"\"
    import click
    from kiln.cli.state import State, pass_state

    @click.command("frobnicate", short_help="Frobnicate an image")
    @click.argument("image")
    @pass_state
    def command(state: State, image):
        from kiln.ops import frob            # heavy imports inside the function
        with state.context() as ctx:         # store + events rendered to the terminal
            result = frob.frobnicate(ctx, image)
        state.echo(result.text)

Raise ``kiln.errors`` classes for user mistakes (one ``Error:`` line, exit 125);
``kiln.cli.state.exit_with(n)`` ends with another code. ``kiln.cli.render`` has
podman-style tables, sizes, ages, ``--format`` templates and the event renderer.
"""
