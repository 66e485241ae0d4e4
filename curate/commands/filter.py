"""``curate filter``: score and select a corpus with named filters, no YAML needed."""
from __future__ import annotations

from typing import Any

import click

from curate.core import CurateError


def parse_settings(pairs: tuple[str, ...] | list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``["gopher_quality.min_words=80"]`` -> ``{"gopher_quality": {"min_words": 80}}`` (YAML values)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        name, dot, param = key.strip().partition(".")
        if not sep or not dot or not param:
            raise CurateError(f"--set expects filter.param=value, got '{pair}'")
        if name not in names:
            raise CurateError(f"--set {pair}: '{name}' is not one of the --filter names ({', '.join(names)})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise CurateError(f"--set {pair}: the value is not valid YAML") from None
        out.setdefault(name, {})[param] = value
    return out


def filter_pipeline(input_path: str, output: str, names: list[str], settings: dict[str, dict[str, Any]],
                    output_format: str = "parquet") -> dict[str, Any]:
    """An in-memory pipeline ``[score, select]``: parameters that change scores go to ``score``,
    thresholds to ``select`` (so a new threshold re-runs only ``select``)."""
    import filters

    if not names:
        raise CurateError(f"give at least one --filter; valid filters: {', '.join(filters.registry())}")
    if len(set(names)) != len(names):
        raise CurateError(f"--filter given twice in {names}")
    scored, overrides = [], {}
    for name in names:
        cls = filters.get(name)
        params = settings.get(name, {})
        score_params = {k: v for k, v in params.items() if k in cls.score_params}
        scored.append({name: score_params} if score_params else name)
        thresholds = {k: v for k, v in params.items() if k not in cls.score_params}
        if thresholds:
            overrides[name] = thresholds
        filters.build(name, params)  # fail early on unknown parameters or bad values
    return {"name": "filter", "input": {"path": input_path}, "output": {"path": output, "format": output_format},
            "stages": [{"score": {"filters": scored}}, {"select": {"filters": overrides}}]}


@click.command("filter")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output directory (stage directories and final/).")
@click.option("--filter", "names", multiple=True, metavar="NAME", help="A registered filter (repeatable, in order).")
@click.option("--set", "settings", multiple=True, metavar="FILTER.PARAM=VALUE",
              help="Override a filter parameter, e.g. gopher_quality.min_words=80 (repeatable).")
@click.option("--format", "output_format", type=click.Choice(["parquet", "jsonl"]), default="parquet",
              show_default=True, help="Format of OUTPUT/final.")
@click.option("--master", default=None, help="Spark master (default: $CURATE_SPARK_MASTER or local[*]).")
@click.option("--conf", "conf", multiple=True, metavar="K=V", help="Extra Spark configuration (repeatable).")
@click.option("--force", is_flag=True, help="Rebuild every stage, also the scores.")
def command(input_path, output, names, settings, output_format, master, conf, force):
    """Filter INPUT with heuristic filters and print the funnel (kept / rejected per reason).

    Scores are reused when only thresholds change: rerunning with a new --set for a threshold
    re-runs only the select stage.
    """
    from curate.engine.runner import run_pipeline
    from curate.engine.spark import parse_conf
    from curate.quality.score import format_funnel

    names = list(names)
    pipeline = filter_pipeline(input_path, output, names, parse_settings(settings, names), output_format)
    result = run_pipeline(pipeline, master=master, conf=parse_conf(conf), force=force,
                          from_stage=None if force else "select")
    funnel = next(stats["funnel"] for stats in result.stats.values() if "funnel" in stats)
    click.echo(format_funnel(funnel))
    click.echo(f"kept documents: {result.final_dir}")
