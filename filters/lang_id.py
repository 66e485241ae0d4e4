"""fastText language identification (Joulin et al. 2017, "Bag of Tricks for Efficient Text
Classification"; the lid.176 model; FineWeb keeps English with score >= 0.65).

``model`` is any fastText supervised model whose labels are ``__label__<code>`` (lid.176.bin
or one built with ``curate langid train``), a local path or a URI (``s3://…``: fetched with its
sidecar into each worker's local cache by :func:`curate.integrity.load_fasttext`). The file must
have a ``<model>.sha256`` sidecar (``sha256sum model.bin > model.bin.sha256``); it is checked
before loading, and the model is loaded once per Python worker. ``score`` adds top-level
``language`` / ``language_score``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from curate.core import CurateError
from curate.integrity import load_fasttext
from filters import Filter, register

LABEL_PREFIX = "__label__"


@register("lang_id")
@dataclass(frozen=True)
class LangId(Filter):
    """Top fastText language and its probability; keep ``languages`` (all if unset) above ``min_score``."""

    model: str | None = None
    languages: tuple[str, ...] | None = None
    min_score: float = 0.65

    keys: ClassVar[tuple[str, ...]] = ("language", "score")
    string_keys: ClassVar[frozenset[str]] = frozenset({"language"})
    score_params: ClassVar[tuple[str, ...]] = ("model",)
    path_params: ClassVar[tuple[str, ...]] = ("model",)
    promote: ClassVar[Mapping[str, str]] = {"language": "language", "score": "language_score"}

    def __post_init__(self) -> None:
        if isinstance(self.languages, str):  # `languages: en` in YAML means ["en"]
            object.__setattr__(self, "languages", (self.languages,))

    def _model(self):
        if not self.model:
            raise CurateError("lang_id: set `model` to a fastText language-ID model (see `curate langid train`)")
        return load_fasttext(self.model, what="lang_id: model")[0]

    def setup(self) -> None:
        self._model()

    def score(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        text = " ".join((doc.get("text") or "").split())
        if not text:
            return {"language": "", "score": 0.0}
        labels, probs = self._model().predict(text, k=1)
        language = labels[0][len(LABEL_PREFIX):] if labels else ""
        return {"language": language, "score": min(float(probs[0]), 1.0) if labels else 0.0}

    def reject(self, s: Mapping[str, Any]) -> str | None:
        if self.languages and s["language"] not in self.languages:
            return "language"
        if s["score"] < self.min_score:
            return "low_score"
        return None
