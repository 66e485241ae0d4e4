"""``curate mix SPEC -o OUT``: materialise a training mixture (see docs/training.md)."""
from __future__ import annotations

import click

from curate.commands._output_lease import output_lease, take_over_option


@click.command("mix")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, help="Mixture directory to write (a path or a URI).")
@click.option("--force", is_flag=True, help="Replace an existing mixture directory.")
@take_over_option
def command(spec, output, force, take_over):
    """Build the mixture described by SPEC (YAML): which documents, how often, in which order."""
    from curate.train.mix import build_mixture, load_spec

    mixture = load_spec(spec)
    with output_lease(output, take_over=take_over, replaced_whole=True) as out:
        manifest = build_mixture(mixture, out, overwrite=force)
    click.echo(f"{'source':<20} {'target':>12} {'tokens':>12} {'docs':>8} {'epochs':>7}")
    for name, s in manifest["sources"].items():
        flag = " (capped)" if s["capped"] else ""
        click.echo(f"{name:<20} {s['target_tokens']:>12,} {s['tokens']:>12,} {s['documents']:>8,} "
                   f"{s['epochs']:>7.3f}{flag}")
    click.echo(f"total {manifest['total_tokens']:,} tokens ({manifest['token_count']}), "
               f"{manifest['documents']:,} documents -> {output}")
