"""kiln's verbs, one module each; the file name is the verb (see kiln.cli.lazy)."""
