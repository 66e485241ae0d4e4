"""``curate mix SPEC -o OUT``: materialise a training mixture (see docs/training.md)."""
from __future__ import annotations

import click


@click.command("mix")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Mixture directory to write.")
@click.option("--force", is_flag=True, help="Replace an existing mixture directory.")
def command(spec, output, force):
    """Build the mixture described by SPEC (YAML): which documents, how often, in which order."""
    from curate.train.mix import build_mixture, load_spec

    manifest = build_mixture(load_spec(spec), output, overwrite=force)
    click.echo(f"{'source':<20} {'target':>12} {'tokens':>12} {'docs':>8} {'epochs':>7}")
    for name, s in manifest["sources"].items():
        flag = " (capped)" if s["capped"] else ""
        click.echo(f"{name:<20} {s['target_tokens']:>12,} {s['tokens']:>12,} {s['documents']:>8,} "
                   f"{s['epochs']:>7.3f}{flag}")
    click.echo(f"total {manifest['total_tokens']:,} tokens ({manifest['token_count']}), "
               f"{manifest['documents']:,} documents -> {output}")
