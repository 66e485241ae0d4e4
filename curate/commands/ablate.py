"""``curate ablate SPEC -o OUT``: compare selections by training the same small model on each."""
from __future__ import annotations

import click

from curate.commands._output_lease import output_lease, take_over_option


@click.command("ablate")
@click.argument("spec")
@click.option("-o", "--output", required=True, help="Directory for runs and results (a path or a URI).")
@click.option("--no-plot", is_flag=True, help="Skip results.png (matplotlib).")
@take_over_option
def command(spec, output, no_plot, take_over):
    """Mix, tokenize and train each selection in SPEC at the same token budget; print the comparison."""
    from curate.io import fs
    from curate.train.ablate import load_ablation, markdown_table, run_ablation

    ablation = load_ablation(spec)
    with output_lease(output, take_over=take_over) as out:
        rows = run_ablation(ablation, out, plot=not no_plot)
    click.echo(markdown_table(rows))
    click.echo(f"results: {fs.join(out, 'results.md')}, results.csv, results.json"
               + ("" if no_plot else ", results.png"))
