"""``curate mixopt SPEC -o OUT``: propose a training mixture from proxy runs (docs/mixtures.md)."""
from __future__ import annotations

import click


@click.command("mixopt")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory for proxies and results.")
@click.option("--no-plot", is_flag=True, help="Skip the plots (matplotlib).")
def command(spec, output, no_plot):
    """Train one small proxy per sampled mixture of SPEC's domains, fit weights -> target loss, propose
    the best mixture under the caps (RegMix) and, with validate, train it beside natural and uniform."""
    from pathlib import Path

    from curate.mixture.mixopt import run_mixopt
    from curate.mixture.spec import load_mixopt

    summary = run_mixopt(load_mixopt(spec), output, log=lambda m: click.echo(m, err=True), plot=not no_plot)
    reg = summary["regression"]
    rho = reg["models"][reg["chosen"]]["cv_spearman"]
    click.echo(f"regression: {reg['chosen']} (out-of-fold Spearman {'n/a' if rho is None else f'{rho:.3f}'})")
    click.echo("proposed: " + ", ".join(f"{d} {w:.3f}" for d, w in summary["proposed"].items()))
    for v in summary["validation"]:
        click.echo(f"validate {v['mixture']:<9} target loss {v['target_loss']:.4f}")
    click.echo(f"mix spec: {summary['mix_spec']}; results: {Path(output) / 'report.md'}")
