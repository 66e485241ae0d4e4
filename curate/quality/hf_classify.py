"""Stage ``hf_classify``: a local Hugging Face sequence classifier or regressor as a score column
(the library: :mod:`curate.quality.hf_models`; docs/hf_classify.md)."""
from __future__ import annotations

from curate.core import StageContext, StageOutput, stage


@stage("hf_classify")
def hf_classify(df, ctx: StageContext, *, model: str, name: str = "hf_classify", positive: str | None = None,
                batch_size: int = 32, long_docs: str = "first", max_length: int | None = None,
                device: str | None = None, precision: str = "auto") -> StageOutput:
    """Score documents with a local Hugging Face sequence classifier/regressor: struct `<name>`.

    ``<name>.score`` is P(``positive``) (default: the second of two labels), the expected value
    of numeric class names, or the regression value; ``label`` the arg-max class; ``probs``
    the per-class probabilities. The directory needs a ``SHA256SUMS`` manifest
    (``curate classifier hash DIR``). ``device``: default the task's GPU, else CPU; ``precision``
    ``auto`` = bfloat16 on GPU, float32 on CPU. ``long_docs``: ``first`` window or ``mean`` of windows.
    """
    from curate.quality.columns import scored_output
    from curate.quality.hf_models import hf_scorer

    scorer = hf_scorer(str(ctx.resolve(model)), name=name, positive=positive, batch_size=batch_size,
                       long_docs=long_docs, max_length=max_length, device=device, precision=precision)
    loaded = scorer.load()
    return scored_output(df, [scorer], {"model": str(model), "manifest_sha256": loaded.digest, "task": loaded.task,
                                        "labels": list(loaded.labels), "max_length": loaded.max_length,
                                        "long_docs": long_docs})
