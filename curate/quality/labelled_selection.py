"""Labels → fastText → score → budget: the tail shared by BETR (``benchmark_similarity``),
``perplexity_correlation`` and ``preselect``.

A method labels a small sample of the corpus (positives, negatives); a fastText classifier
(DCLM recipe, Li et al. 2024) trained on it scores every document in one pass, and the top
``keep_tokens_fraction`` of the tokens is kept. One function, so every method writes the
same artifacts and the same stats keys.
"""
from __future__ import annotations

import inspect
import json
from typing import Any, Sequence

from curate.core import CurateError, StageContext, StageOutput

POSITIVE, NEGATIVE = "hq", "lq"
SUMMARY = "summary.json"


def classifier_options(options: dict | None) -> dict:
    """Checked extra keyword arguments for :func:`curate.quality.classifier.train_classifier`
    (``bucket``, ``dim``, ``epoch``, …); the seed and labels are set by the caller."""
    from curate.quality.classifier import train_classifier

    options = dict(options or {})
    valid = [p.name for p in inspect.signature(train_classifier).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("seed", "label_positive", "label_negative")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise CurateError(f"classifier: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return options


def select_by_trained_classifier(df, ctx: StageContext, positives: Sequence[str], negatives: Sequence[str], *,
                                 name: str, keep_tokens_fraction: float | None, seed: int,
                                 classifier: dict | None = None, stats: dict[str, Any] | None = None) -> StageOutput:
    """Train fastText on ``positives`` vs ``negatives``, score ``df`` as ``<name>.prob`` and keep
    the top ``keep_tokens_fraction`` of tokens (``None``: score only, reject nothing).

    Artifacts: ``classifier.bin`` (+ ``.sha256``, ``.json``) and ``summary.json`` (= the stats:
    ``stats`` plus ``labelled_docs``, ``classifier`` held-out metrics and ``selection``, the
    ``select_budget`` stats).
    """
    from curate.quality.budget import select_by_budget
    from curate.quality.classifier import train_classifier
    from curate.quality.columns import append_scores
    from curate.quality.scorers import fasttext_scorer

    model_path = ctx.artifact("classifier.bin")
    report = train_classifier(list(positives), list(negatives), model_path, seed=seed, label_positive=POSITIVE,
                              label_negative=NEGATIVE, **classifier_options(classifier))
    for sidecar in ("classifier.bin.sha256", "classifier.bin.json"):
        ctx.artifact(sidecar)
    summary = {**(stats or {}), "labelled_docs": {"positive": len(positives), "negative": len(negatives)},
               "classifier": report.get("metrics", {})}
    scored = append_scores(df, [fasttext_scorer(str(model_path), name=name, label=POSITIVE)])
    kept, rejected = scored, None
    if keep_tokens_fraction is not None:
        kept, rejected, summary["selection"] = select_by_budget(
            scored, score=f"{name}.prob", keep_tokens_fraction=keep_tokens_fraction, seed=seed)
    ctx.artifact(SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return StageOutput(kept=kept, rejected=rejected, stats=summary)
