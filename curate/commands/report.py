"""``curate report OUTPUT -o report.html``: the HTML report of a pipeline run (see docs/report.md)."""
from __future__ import annotations

import click


@click.command("report")
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", "destination", required=True, type=click.Path(dir_okay=False),
              help="HTML file to write.")
@click.option("--mixture", "mixtures", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A `curate mix` output to show as mixture composition (repeatable).")
@click.option("--max-rows", default=200_000, show_default=True, help="Values per score histogram at most.")
@click.option("--title", default=None, help="Page title (default: the output directory name).")
def command(output, destination, mixtures, max_rows, title):
    """Write one self-contained HTML report (inline SVG plots) for the run in OUTPUT."""
    from curate.report import write_report

    path = write_report(output, destination, mixtures=mixtures, max_rows=max_rows, title=title)
    click.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
