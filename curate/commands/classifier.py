"""``curate classifier``: train fastText quality classifiers (DCLM recipe) and hash models."""
from __future__ import annotations

import click

from curate.quality.classifier import DCLM_HYPERPARAMETERS, DEFAULT_MAX_CHARS


@click.group("classifier")
def command():
    """fastText quality classifiers for the fasttext_score stage."""


@command.command("train")
@click.option("--positive", "positives", multiple=True, required=True, metavar="SRC[:N]",
              help="Positive (high-quality) source: JSONL/Parquet file, directory, stage or pipeline output; "
                   ":N samples N docs deterministically. Repeatable.")
@click.option("--negative", "negatives", multiple=True, required=True, metavar="SRC[:N]",
              help="Negative source, same forms as --positive. Repeatable.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model path (MODEL.bin).")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text in raw files.")
@click.option("--lowercase", is_flag=True, help="Lowercase text (at train and score time).")
@click.option("--max-chars", default=DEFAULT_MAX_CHARS, show_default=True, type=int, help="Cut each document.")
@click.option("--epoch", default=DCLM_HYPERPARAMETERS["epoch"], show_default=True, type=int)
@click.option("--lr", default=DCLM_HYPERPARAMETERS["lr"], show_default=True, type=float)
@click.option("--dim", default=DCLM_HYPERPARAMETERS["dim"], show_default=True, type=int)
@click.option("--word-ngrams", default=DCLM_HYPERPARAMETERS["word_ngrams"], show_default=True, type=int)
@click.option("--min-count", default=DCLM_HYPERPARAMETERS["min_count"], show_default=True, type=int)
@click.option("--bucket", default=DCLM_HYPERPARAMETERS["bucket"], show_default=True, type=int,
              help="n-gram hash buckets (model size ≈ bucket × dim × 4 bytes).")
@click.option("--holdout", default=0.1, show_default=True, type=float, help="Held-out fraction per class.")
@click.option("--threads", default=1, show_default=True, type=int, help=">1 is faster but not reproducible.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--master", default=None, help="Spark master used to read the sources.")
def train(positives, negatives, output, text_field, lowercase, max_chars, epoch, lr, dim, word_ngrams,
          min_count, bucket, holdout, threads, seed, master):
    """Train a balanced hq-vs-lq classifier; print held-out precision/recall/F1/ROC-AUC."""
    from curate.engine.spark import get_spark
    from curate.quality.classifier import source_texts, train_classifier

    spark = get_spark(master)
    pos = [t for spec in positives for t in source_texts(spark, spec, seed=seed, text_field=text_field)]
    neg = [t for spec in negatives for t in source_texts(spark, spec, seed=seed, text_field=text_field)]
    report = train_classifier(pos, neg, output, seed=seed, holdout=holdout, lowercase=lowercase,
                              max_chars=max_chars, epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams,
                              min_count=min_count, bucket=bucket, threads=threads,
                              metadata={"sources": {"positive": list(positives), "negative": list(negatives)}})
    metrics = report["metrics"]
    click.echo(f"model {output}  sha256 {report['sha256']}")
    click.echo(f"trained on {report['counts']['train']} docs, held out {report['counts']['holdout']}")
    if metrics:
        click.echo("held-out  " + "  ".join(f"{k} {metrics[k]:.4f}" for k in ("precision", "recall", "f1", "roc_auc")))


@command.command("hash")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
def hash_model(model):
    """Write MODEL.sha256 for a model you trust (e.g. a downloaded DCLM classifier)."""
    from curate.integrity import write_sidecar

    click.echo(f"{write_sidecar(model)}  {model}")
