"""``fasttext_score``: a fastText quality classifier's probability as a column (DCLM recipe)."""
from __future__ import annotations

from curate.core import CurateError, StageContext, StageOutput, stage
from curate.quality.columns import append_struct, chunked


@stage("fasttext_score")
def fasttext_score(df, ctx: StageContext, *, model: str, name: str = "fasttext_score", label: str = "hq",
                   batch_size: int = 1024) -> StageOutput:
    """Score documents with a fastText classifier (DCLM, Li et al. 2024): `<name>.prob` = P(label).

    The model must have a ``<model>.sha256`` sidecar (written by ``curate classifier train``
    or ``curate classifier hash``); text is normalized with the settings saved at training.
    """
    from pyspark.sql.types import DoubleType

    from curate.quality.classifier import load_classifier

    if batch_size < 1:
        raise CurateError(f"fasttext_score: batch_size must be >= 1, got {batch_size}")
    path = str(ctx.resolve(model))
    load_classifier(path).check_label(label)  # verify hash and label on the driver, fail early

    def score(texts):
        return {"prob": load_classifier(path).predict_proba(texts, label)}

    scored = append_struct(df, name, {"prob": DoubleType()}, chunked(score, batch_size))
    return StageOutput(kept=scored)
