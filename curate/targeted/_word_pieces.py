"""Chunk-level memo of a BERT WordPiece tokenizer, for static embeddings (:mod:`curate.targeted.static_embed`).

BERT's tokenizer (Devlin et al. 2019) deletes control characters, splits the text at whitespace and
punctuation, and cuts each pre-token into word pieces independently of its neighbours. So the
pieces of a document are the concatenation of the pieces of its whitespace-separated chunks, and
a chunk's pieces can be computed once and remembered: a document is split with ``str.split()``
(C speed, no Rust pass over the text), its chunks looked up in a dict, and only chunks never seen
before go through the tokenizer (which splits their punctuation as it would in context).
``str.split()`` also splits at a few control characters that BERT deletes instead
(``\x0b \x0c \x1c-\x1f \x85``): they are deleted first, as BERT does. Tests check the pieces
equal the tokenizer's on real documents.
"""
from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np

# Characters str.split() splits at but BERT's clean_text deletes (category Cc, not White_Space in Rust).
DELETED_BY_BERT = dict.fromkeys([0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x1F, 0x85])
DEFAULT_LIMIT = 1 << 19  # remembered chunks before the memo starts over (~100 MB per worker at most)


def chunks_of(text: str) -> list[str]:
    """The whitespace-separated chunks BERT's pre-tokenizer would see (before splitting punctuation)."""
    if not text.isascii() or any(c in text for c in "\x0b\x0c\x1c\x1d\x1e\x1f"):
        text = text.translate(DELETED_BY_BERT)
    return text.split()


def is_bert_wordpiece(tokenizer) -> bool:
    """True for a tokenizer with BERT's normaliser, BERT's pre-tokenizer and a WordPiece model."""
    names = (type(tokenizer.normalizer).__name__, type(tokenizer.pre_tokenizer).__name__,
             type(tokenizer.model).__name__)
    return names == ("BertNormalizer", "BertPreTokenizer", "WordPiece")


class WordPieces:
    """Chunks -> their piece ids, remembered: ``pieces[starts[w]:starts[w + 1]]`` are chunk ``w``'s pieces."""

    def __init__(self, tokenizer, limit: int = DEFAULT_LIMIT):
        self.tokenizer = tokenizer
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        self.index: dict[str, int] = {}
        self.pieces = np.zeros(0, dtype=np.int64)
        self.starts = np.zeros(1, dtype=np.int64)

    def words_of(self, texts: Sequence[str], max_pieces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(chunk numbers of all texts, flat int64; chunks per text).

        ``max_pieces``: only the chunks that can hold each text's first ``max_pieces`` pieces. A chunk
        has at least one piece unless the tokenizer deletes all of it (zero-width characters), so the
        first ``max_pieces`` chunks are enough; a text they leave short is looked up whole again.
        """
        per_text = [chunks_of(text) for text in texts]
        if max_pieces is None:
            return self._numbers(per_text)
        cut = [chunks[:max_pieces] for chunks in per_text]
        numbers, counts = self._numbers(cut)
        pieces_per_text = np.bincount(np.repeat(np.arange(len(cut)), counts), minlength=len(cut),
                                      weights=np.diff(self.starts)[numbers])
        short = [i for i, chunks in enumerate(per_text) if len(chunks) > max_pieces
                 and pieces_per_text[i] < max_pieces]
        if not short:
            return numbers, counts
        for i in short:
            cut[i] = per_text[i]
        return self._numbers(cut)

    def _numbers(self, per_text: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        counts = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
        total = int(counts.sum())
        try:  # the common case once the memo is warm: every chunk known, one C-level pass
            return np.fromiter(map(self.index.__getitem__, chain.from_iterable(per_text)), np.int64, total), counts
        except KeyError:
            pass
        if len(self.index) > self.limit:
            self._reset()
        self._remember(sorted({w for w in chain.from_iterable(per_text) if w not in self.index}))
        return np.fromiter(map(self.index.__getitem__, chain.from_iterable(per_text)), np.int64, total), counts

    def _remember(self, new_words: list[str]) -> None:
        encodings = self.tokenizer.encode_batch_fast(new_words, add_special_tokens=False)
        ids = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        self.starts = np.concatenate([self.starts, self.starts[-1] + np.cumsum(lengths)])
        self.pieces = np.concatenate([self.pieces, flat])
        first = len(self.index)
        self.index.update((w, first + i) for i, w in enumerate(new_words))
