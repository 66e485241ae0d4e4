"""``curate filters``: list the registered document filters, their parameters and defaults."""
from __future__ import annotations

import json

import click


@click.command("filters")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def command(names, as_json):
    """List filters (or only NAMES) with their thresholds, defaults and the score fields they write."""
    from filters.catalog import catalog, format_catalog

    entries = catalog(names)
    click.echo(json.dumps(entries, indent=2) if as_json else format_catalog(entries))
