"""CLI subcommands, auto-discovered by curate.cli (each module exposes ``command``)."""
