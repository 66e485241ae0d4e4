"""``curate corpus``: build corpora that need no download."""
from __future__ import annotations

from pathlib import Path

import click


@click.group("corpus")
def command():
    """Build a corpus from local material (no download)."""


@command.command("local-docs")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--limit", type=int, default=None, help="Keep at most this many documents (first by id).")
def local_docs(out, limit):
    """Harvest package descriptions, licence files and stdlib docstrings into OUT (JSONL)."""
    from curate.io.localdocs import write_local_docs

    n = write_local_docs(Path(out), limit)
    click.echo(f"wrote {n:,} documents to {out}")
