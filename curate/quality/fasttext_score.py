"""``fasttext_score``: a fastText quality classifier's probability as a column (DCLM recipe)."""
from __future__ import annotations

from curate.core import StageContext, StageOutput, stage


@stage("fasttext_score")
def fasttext_score(df, ctx: StageContext, *, model: str, name: str = "fasttext_score", label: str = "hq",
                   batch_size: int = 1024) -> StageOutput:
    """Score documents with a fastText classifier (DCLM, Li et al. 2024): `<name>.prob` = P(label).

    The model must have a ``<model>.sha256`` sidecar (written by ``curate classifier train``
    or ``curate classifier hash``); text is normalized with the settings saved at training.
    Same as the entry ``{fasttext: {model: ...}}`` of the ``score`` stage.
    """
    from curate.quality.columns import scored_output
    from curate.quality.scorers import fasttext_scorer

    scorer = fasttext_scorer(str(ctx.resolve(model)), name=name, label=label, batch_size=batch_size)
    return scored_output(df, [scorer])
