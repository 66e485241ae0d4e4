"""``curate ablate SPEC -o OUT``: compare selections by training the same small model on each."""
from __future__ import annotations

import click


@click.command("ablate")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Directory for runs and results.")
@click.option("--no-plot", is_flag=True, help="Skip results.png (matplotlib).")
def command(spec, output, no_plot):
    """Mix, tokenize and train each selection in SPEC at the same token budget; print the comparison."""
    from pathlib import Path

    from curate.train.ablate import load_ablation, markdown_table, run_ablation

    rows = run_ablation(load_ablation(spec), output, plot=not no_plot)
    click.echo(markdown_table(rows))
    click.echo(f"results: {Path(output) / 'results.md'}, results.csv, results.json"
               + ("" if no_plot else ", results.png"))
