"""``curate classifier``: train fastText quality classifiers (DCLM recipe) or embedding heads
(FineWeb-Edu recipe) and hash models."""
from __future__ import annotations

import click

from curate.quality.classifier import DCLM_HYPERPARAMETERS, DEFAULT_MAX_CHARS

KINDS = ("fasttext", "embedding-head")


@click.group("classifier")
def command():
    """Quality classifiers: fastText (fasttext_score) and embedding heads (hf_classify)."""


@command.command("train")
@click.option("--kind", type=click.Choice(KINDS), default="fasttext", show_default=True,
              help="fasttext: a binary fastText model; embedding-head: a head on frozen MiniLM embeddings "
                   "(a model directory for hf_classify), reported beside fastText on the same held-out split.")
@click.option("--labelled", type=click.Path(exists=True, dir_okay=False), default=None,
              help="embedding-head: JSONL of {text, label}; numeric labels => regression, strings => classes.")
@click.option("--label-field", default="label", show_default=True, help="Field holding the label in --labelled.")
@click.option("--task", type=click.Choice(("auto", "classification", "regression")), default="auto",
              show_default=True, help="embedding-head: override the task inferred from the labels.")
@click.option("--hidden", default=0, show_default=True, type=int,
              help="embedding-head: hidden units of an MLP head (0 = linear/logistic).")
@click.option("--head-epochs", default=300, show_default=True, type=int, help="embedding-head: full-batch steps.")
@click.option("--head-lr", default=0.01, show_default=True, type=float, help="embedding-head: AdamW learning rate.")
@click.option("--embedding-model", default=None,
              help="embedding-head: encoder directory or package (default: the bundled all-MiniLM-L6-v2).")
@click.option("--device", default=None, help="embedding-head: cpu, cuda, cuda:1 (default: cuda if available).")
@click.option("--positive", "positives", multiple=True, metavar="SRC[:N]",
              help="Positive (high-quality) source: JSONL/Parquet file, directory, stage or pipeline output; "
                   ":N samples N docs deterministically. Repeatable.")
@click.option("--negative", "negatives", multiple=True, metavar="SRC[:N]",
              help="Negative source, same forms as --positive. Repeatable.")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Model path (MODEL.bin; for embedding-head a model directory).")
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
def train(kind, labelled, label_field, task, hidden, head_epochs, head_lr, embedding_model, device, positives,
          negatives, output, text_field, lowercase, max_chars, epoch, lr, dim, word_ngrams, min_count, bucket, holdout,
          threads, seed, master):
    """Train a classifier; print its held-out metrics.

    fasttext: balanced hq-vs-lq from --positive/--negative (precision/recall/F1/ROC-AUC).
    embedding-head: from --labelled JSONL (or --positive/--negative as classes hq/lq); writes the model
    directory and OUTPUT/report.json with the head and fastText metrics on the same held-out split.
    """
    from curate.core import CurateError

    if kind == "embedding-head":
        fasttext = {"epoch": epoch, "lr": lr, "dim": dim, "word_ngrams": word_ngrams, "min_count": min_count,
                    "bucket": bucket}
        _train_embedding_head(labelled, label_field, task, hidden, head_epochs, head_lr, embedding_model, device,
                              positives, negatives, output, text_field, holdout, seed, master, fasttext)
        return
    if labelled or not positives or not negatives:
        raise CurateError("--kind fasttext needs --positive and --negative (--labelled is for --kind embedding-head)")
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


def _train_embedding_head(labelled, label_field, task, hidden, head_epochs, head_lr, embedding_model, device,
                          positives, negatives, output, text_field, holdout, seed, master, fasttext):
    from curate.core import CurateError
    from curate.quality.embedding_head import read_labelled, train_embedding_head
    from curate.quality.hf_models import load_encoder
    from curate.targeted.embedding import DEFAULT_MODEL, resolve_model_dir

    if labelled:
        texts, labels = read_labelled(labelled, text_field=text_field, label_field=label_field)
    elif positives and negatives:
        from curate.engine.spark import get_spark
        from curate.quality.classifier import source_texts

        spark = get_spark(master)
        pos = [t for spec in positives for t in source_texts(spark, spec, seed=seed, text_field=text_field)]
        neg = [t for spec in negatives for t in source_texts(spark, spec, seed=seed, text_field=text_field)]
        texts, labels = pos + neg, ["hq"] * len(pos) + ["lq"] * len(neg)
    else:
        raise CurateError("--kind embedding-head needs --labelled FILE (or --positive and --negative)")
    encoder_dir = resolve_model_dir(embedding_model)  # verified: pip RECORD or sha256 sidecars
    encoder = load_encoder(encoder_dir, f"verified:{encoder_dir}", device=device)
    report = train_embedding_head(texts, labels, output, encoder=encoder, encoder_dir=encoder_dir,
                                  encoder_name=embedding_model or DEFAULT_MODEL, task=task, hidden=hidden,
                                  epochs=head_epochs, lr=head_lr, holdout=holdout, seed=seed, fasttext=fasttext,
                                  metadata={"source": labelled or {"positive": list(positives),
                                                                   "negative": list(negatives)}})
    click.echo(f"model directory {output} ({report['task']}; labels {report['labels'] or 'values'}); "
               f"fastText {report['fasttext']['model']} beside it")
    click.echo(f"held out {report['split']['test']} of {report['split']['test'] + report['split']['train']} docs")
    keys = ("rmse", "spearman") if report["task"] == "regression" else ("accuracy", "macro_f1")
    for side in ("embedding_head", "fasttext"):
        metrics = report[side]["metrics"]
        click.echo(f"{side:15s} " + "  ".join(f"{k} {_fmt(metrics[k])}" for k in keys))


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@command.command("hash")
@click.argument("model", type=click.Path(exists=True))
def hash_model(model):
    """Record the hashes of a model you trust: MODEL.sha256 for a file (e.g. a downloaded DCLM
    classifier), DIR/SHA256SUMS for a Hugging Face model directory (hf_classify)."""
    from pathlib import Path

    if Path(model).is_dir():
        from curate.quality.hf_models import MANIFEST, write_manifest

        digest = write_manifest(model)
        click.echo(f"{digest}  {Path(model) / MANIFEST}")
        return
    from curate.integrity import write_sidecar

    click.echo(f"{write_sidecar(model)}  {model}")
