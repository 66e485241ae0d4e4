"""Stages ``perplexity_correlation`` (Thrush et al. 2024) and ``preselect`` (Shum et al. 2025).

Both run: deterministic document sample → loss matrix (computed here, resumed, or read from
``matrix``) → per-text score (correlation estimate + projection, or PreSelect predictive
strength) → include/exclude labels on the sample → fastText classifier (DCLM recipe) scoring the
whole input → top ``keep_fraction`` of the tokens, the tail shared with BETR
(:func:`curate.quality.labelled_selection.select_by_trained_classifier`). Every intermediate is
an artifact.

Only the sample (``sample_docs`` rows) and its per-text numbers reach the driver.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from curate.core import ID, TEXT, CurateError, StageContext, StageOutput, stage
from curate.quality.labelled_selection import NEGATIVE, POSITIVE, classifier_options, select_by_trained_classifier


def sample_documents(df, n: int, seed: int, columns: list[str]) -> pd.DataFrame:
    """The ``n`` documents with the smallest seeded hash of id (ties by id): a partition-independent sample."""
    from pyspark.sql import functions as F

    if n < 3:
        raise CurateError(f"sample_docs must be at least 3, got {n}")
    picked = df.select(*columns).orderBy(F.xxhash64(F.lit(seed), F.col(ID)), F.col(ID)).limit(n)
    return picked.toPandas().sort_values(ID, kind="stable").reset_index(drop=True)


def documents_by_id(df, ids: list[str], columns: list[str]) -> pd.DataFrame:
    """Rows of ``df`` for the (sample-sized) list ``ids``; every id must exist."""
    from pyspark.sql import functions as F

    wanted = df.sparkSession.createDataFrame(pd.DataFrame({ID: ids}))
    found = df.select(*columns).join(F.broadcast(wanted), ID, "inner").toPandas()
    missing = len(set(ids) - set(found[ID]))
    if missing:
        raise CurateError(f"{missing} ids of the loss matrix are not in this stage's input; "
                          "build the matrix from a sample of the same corpus")
    return found.sort_values(ID, kind="stable").reset_index(drop=True)


def loss_matrix(df, ctx: StageContext, *, models, matrix, sample_docs, seed, domain, max_length, stride,
                batch_size, device, workers) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-document loss matrix, sample documents with text): read, resumed or computed."""
    from curate.pplcorr import lossmatrix as lm

    columns = [ID, TEXT] + ([domain] if domain else [])
    if domain and domain not in df.columns:
        raise CurateError(f"domain column '{domain}' is not in the input; columns: {', '.join(df.columns)}")
    given = ctx.resolve(matrix) if matrix else None
    if not models and not (given and given.is_file()):
        raise CurateError("give `models` (local HF model dirs) to compute the loss matrix, "
                          "or `matrix` (a file from `curate ppl-matrix`)")
    if given and given.is_file() and not models:
        table = pd.read_parquet(given)
        docs = documents_by_id(df, table[ID].tolist(), columns)
    else:
        docs = (documents_by_id(df, pd.read_parquet(given)[ID].tolist(), columns)
                if given and given.is_file() else sample_documents(df, sample_docs, seed, columns))
        specs = [lm.parse_model(m, ctx.base_dir) for m in models]
        table = lm.build_matrix(docs, specs, given or ctx.artifact("matrix.parquet"), device=device,
                                max_length=max_length, stride=stride, batch_size=batch_size,
                                spark=ctx.spark if workers else None, log=lambda _: None)
    table = table.drop(columns=[c for c in ([domain] if domain else []) if c in table.columns])
    if domain:
        table = table.merge(docs[[ID, domain]], on=ID, how="left", validate="one_to_one")
    lm.write_atomic(table, ctx.artifact("matrix.parquet"))
    return table, docs


def text_table(matrix: pd.DataFrame, domain: str | None) -> pd.DataFrame:
    """Rows to score: documents, or domains aggregated over their documents."""
    from curate.pplcorr.lossmatrix import aggregate_domains

    return aggregate_domains(matrix, domain) if domain else matrix


def mean_tokens(texts: pd.DataFrame) -> np.ndarray:
    from curate.pplcorr.lossmatrix import TOKENS

    return texts[[c for c in texts.columns if c.startswith(TOKENS)]].mean(axis=1).to_numpy()


def document_labels(docs: pd.DataFrame, text_labels: pd.Series, domain: str | None) -> pd.Series:
    """Each sample document's label: its own, or its domain's (None = unused for training)."""
    key = docs[domain].astype(str) if domain else docs[ID]
    return key.map(text_labels)


def train_and_select(df, ctx: StageContext, docs: pd.DataFrame, labels: pd.Series, *, name: str,
                     keep_fraction: float, seed: int, stats: dict, classifier: dict | None) -> StageOutput:
    """Write the sample's labels, then the shared labels → fastText → score → budget tail."""
    labelled = docs.assign(label=labels)
    labelled[[ID, "label"]].to_parquet(ctx.artifact("labels.parquet"), index=False)
    return select_by_trained_classifier(
        df, ctx, labelled.loc[labelled["label"] == POSITIVE, TEXT].tolist(),
        labelled.loc[labelled["label"] == NEGATIVE, TEXT].tolist(), name=name, keep_tokens_fraction=keep_fraction,
        seed=seed, classifier=classifier, stats=stats)


def _prepare(df, ctx, *, errors, benchmark, models, matrix, sample_docs, domain, seed, max_length, stride,
             batch_size, device, workers):
    from curate.pplcorr import lossmatrix as lm

    if TEXT not in df.columns:
        raise CurateError("the input has no 'text' column")
    seed = ctx.seed if seed is None else seed
    errors_by_model = lm.read_errors(ctx.resolve(errors), benchmark)
    missing = [m.name for m in (lm.parse_model(s, ctx.base_dir) for s in models or ()) if m.name not in errors_by_model]
    if missing:  # before any model runs
        raise CurateError(f"no benchmark error for model(s) {', '.join(missing)} in {errors}")
    table, docs = loss_matrix(df, ctx, models=models, matrix=matrix, sample_docs=sample_docs, seed=seed,
                              domain=domain, max_length=max_length, stride=stride, batch_size=batch_size,
                              device=device, workers=workers)
    texts = text_table(table, domain)
    X, y, names = lm.align(texts, errors_by_model)
    pd.DataFrame({"model": names, "error": y}).to_csv(ctx.artifact("errors.csv"), index=False)
    stats = {"models": names, "sample_docs": len(docs), "texts": len(texts), "unit": domain or "document"}
    return seed, texts, docs, X, y, stats


@stage("perplexity_correlation")
def perplexity_correlation(df, ctx: StageContext, *, errors: str, benchmark: str | None = None,
                           models: list | None = None, matrix: str | None = None, sample_docs: int = 10_000,
                           domain: str | None = None, estimator: str = "spearmanr", projection: str = "linear",
                           keep_fraction: float = 0.1, name: str = "perplexity_correlation",
                           classifier: dict | None = None,
                           max_length: int | None = None, stride: int | None = None, batch_size: int = 8,
                           device: str | None = None, workers: bool = False,
                           seed: int | None = None) -> StageOutput:
    """Keep data whose loss tracks benchmark error across LLMs (Thrush et al. 2024, arXiv:2409.05816).

    ``errors``: CSV of benchmark error per model (``model,error``, or a wide table + ``benchmark``).
    ``models``: local HF model dirs (``NAME=PATH``) scored on ``sample_docs`` documents, resumed into
    ``matrix`` when given; or ``matrix`` alone, built by ``curate ppl-matrix``. Texts are documents or
    ``domain`` groups. Texts with projected weight > 0 label their documents positive, the rest negative;
    a fastText classifier then scores the input and ``select_budget`` keeps ``keep_fraction`` of tokens.
    ``classifier``: options for the fastText trainer (``bucket``, ``dim``, ``epoch``, …; DCLM defaults).
    ``workers: true`` scores the sample on the Spark executors, each Python worker loading a model once.
    """
    from curate.pplcorr import estimators as pplcorr

    classifier_options(classifier)  # fail before any model runs
    for value, valid in ((estimator, pplcorr.ESTIMATORS), (projection, pplcorr.PROJECTIONS)):
        if value not in valid:
            raise CurateError(f"perplexity_correlation: unknown method '{value}'; valid: {', '.join(valid)}")
    pplcorr.caps_from_tokens([1], keep_fraction)  # validates keep_fraction
    seed, texts, docs, X, y, stats = _prepare(
        df, ctx, errors=errors, benchmark=benchmark, models=models, matrix=matrix, sample_docs=sample_docs,
        domain=domain, seed=seed, max_length=max_length, stride=stride, batch_size=batch_size, device=device,
        workers=workers)
    est = pplcorr.estimate(X, y, estimator)
    tau = pplcorr.caps_from_tokens(mean_tokens(texts), keep_fraction)
    weight = pplcorr.project(est, tau, projection)
    include = weight > 0
    pd.DataFrame({ID: texts[ID], "estimate": est, "tau": tau, "weight": weight, "include": include}).to_parquet(
        ctx.artifact("estimates.parquet"), index=False)
    text_labels = pd.Series(np.where(include, POSITIVE, NEGATIVE), index=texts[ID].astype(str))
    stats.update(estimator=estimator, projection=projection, keep_fraction=keep_fraction,
                 included_texts=int(include.sum()))
    return train_and_select(df, ctx, docs, document_labels(docs, text_labels, domain), name=name,
                            keep_fraction=keep_fraction, seed=seed, stats=stats, classifier=classifier)


@stage("preselect")
def preselect(df, ctx: StageContext, *, errors: str, benchmark: str | None = None, models: list | None = None,
              matrix: str | None = None, sample_docs: int = 10_000, domain: str | None = None,
              label_fraction: float = 0.1, keep_fraction: float = 0.1, name: str = "preselect",
              classifier: dict | None = None,
              max_length: int | None = None, stride: int | None = None, batch_size: int = 8,
              device: str | None = None, workers: bool = False, seed: int | None = None) -> StageOutput:
    """PreSelect (Shum et al. 2025, arXiv:2503.00808): train on the most predictive texts.

    Predictive strength S = fraction of model pairs whose bpb order matches their benchmark order.
    The top ``label_fraction`` of texts by S (ties by id) are positives, as many of the bottom are
    negatives; then the same fastText → ``fasttext_score`` → ``select_budget`` path as
    ``perplexity_correlation``, keeping ``keep_fraction`` of tokens (``classifier``: trainer options).
    """
    from curate.pplcorr import estimators as pplcorr

    if not 0 < label_fraction <= 0.5:
        raise CurateError(f"preselect: label_fraction must be in (0, 0.5], got {label_fraction}")
    classifier_options(classifier)
    seed, texts, docs, X, y, stats = _prepare(
        df, ctx, errors=errors, benchmark=benchmark, models=models, matrix=matrix, sample_docs=sample_docs,
        domain=domain, seed=seed, max_length=max_length, stride=stride, batch_size=batch_size, device=device,
        workers=workers)
    strength = pplcorr.predictive_strength(X, y)
    labels = strength_labels(texts[ID].astype(str).to_numpy(), strength, label_fraction)
    pd.DataFrame({ID: texts[ID], "strength": strength, "label": labels.to_numpy()}).to_parquet(
        ctx.artifact("strength.parquet"), index=False)
    stats.update(label_fraction=label_fraction, keep_fraction=keep_fraction,
                 mean_strength=float(strength.mean()))
    return train_and_select(df, ctx, docs, document_labels(docs, labels, domain), name=name,
                            keep_fraction=keep_fraction, seed=seed, stats=stats, classifier=classifier)


def strength_labels(ids: np.ndarray, strength: np.ndarray, fraction: float) -> pd.Series:
    """Top ``fraction`` by strength → positive, bottom as many → negative (ties broken by id)."""
    n = max(1, int(round(fraction * len(ids))))
    if 2 * n > len(ids):
        raise CurateError(f"preselect: {len(ids)} texts are too few for label_fraction={fraction}")
    order = np.lexsort((ids, -strength))  # strongest first, then by id
    labels = pd.Series([None] * len(ids), index=ids, dtype=object)
    labels.iloc[order[:n]] = POSITIVE
    labels.iloc[order[-n:]] = NEGATIVE
    return labels
