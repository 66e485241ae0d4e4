"""Token-count estimates for token budgets.

Default: whitespace-separated words (native Spark, Unicode whitespace). With a
``tokenizer`` path: the number of tokens a Hugging Face ``tokenizers`` tokenizer.json
produces (no special tokens), computed in a vectorised pandas UDF that loads the tokenizer
once per Python worker, after checking its ``.sha256`` sidecar (:func:`curate.integrity.load_tokenizer`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from curate.integrity import load_tokenizer

_WORD = re.compile(r"\S+")


def count_words(text: str | None) -> int:
    return len(_WORD.findall(text)) if text else 0


def count_tokens(texts: Sequence[str | None], tokenizer: str | None = None) -> list[int]:
    """Token counts of ``texts``: whitespace words, or tokens of a tokenizer.json."""
    if tokenizer is None:
        return [count_words(t) for t in texts]
    encodings = load_tokenizer(str(tokenizer)).encode_batch([t or "" for t in texts], add_special_tokens=False)
    return [len(e.ids) for e in encodings]


def token_count_column(text_col: str = "text", tokenizer: str | None = None):
    """A Spark Column with the token count of ``text_col`` (0 for null)."""
    from pyspark.sql import functions as F

    if tokenizer is None:
        return F.coalesce(F.regexp_count(F.col(text_col), F.lit(r"(?U)\S+")), F.lit(0)).cast("long")
    path = str(Path(tokenizer).resolve())
    load_tokenizer(path)  # fail on the driver when the file is missing or invalid

    @F.pandas_udf("long")
    def tokens(texts):
        import pandas as pd

        return pd.Series(count_tokens(texts.tolist(), path), dtype="int64")

    return tokens(F.col(text_col))
