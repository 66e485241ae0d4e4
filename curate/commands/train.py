"""``curate train CONFIG``: the torch pretraining loop (one process or under torchrun)."""
from __future__ import annotations

import click

from curate.commands._output_lease import output_lease, take_over_option


def apply_overrides(cfg, pairs: tuple[str, ...]):
    """``--set optim.max_steps=100`` style overrides (values parsed as YAML scalars)."""
    import yaml

    from curate.core import CurateError

    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CurateError(f"--set expects SECTION.KEY=VALUE or KEY=VALUE, got {pair!r}")
        section, _, field = key.rpartition(".")
        parsed = yaml.safe_load(value)
        try:
            cfg = cfg.replace(**({section: {field: parsed}} if section else {field: parsed}))
        except TypeError as exc:
            raise CurateError(f"--set {key}: unknown key ({exc})") from None
    return cfg


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--no-resume", is_flag=True, help="Start from scratch even if checkpoints exist.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config value.")
@take_over_option
def command(config, no_resume, overrides, take_over):
    """Train the GPT described by CONFIG (YAML) on token shards; resumes from the latest checkpoint."""
    from curate.train.config import load_config, validate
    from curate.train.loop import train

    cfg = apply_overrides(load_config(config), overrides)
    validate(cfg)  # bad config: one line before the lease and any work
    with output_lease(cfg.out, take_over=take_over):
        result = train(cfg, resume=not no_resume)
    if result.evals:
        click.echo(" ".join(f"{k}={v:.4f}" for k, v in result.evals[-1].items() if isinstance(v, float)))
    click.echo(f"trained to step {result.step}; checkpoints in {cfg.out}/checkpoints, log in {cfg.out}/log.jsonl")
