"""Fixtures of the training tests: token shards of real text, built once per session."""
from __future__ import annotations

import pytest
from helpers import read_jsonl


@pytest.fixture(scope="session")
def corpus(shared_data, tmp_path_factory) -> dict:
    """A byte-level BPE (vocab 512) and token shards of the openings of 40 real Wikipedia articles."""
    from curate.train.shards import write_token_shards
    from curate.train.tokenizer import train_tokenizer

    tmp = tmp_path_factory.mktemp("train")
    texts = [r["text"][:2500] for r in read_jsonl(shared_data / "corpora" / "wikitext2.jsonl", limit=40)]
    tok = train_tokenizer(texts, tmp / "tokenizer.json", vocab_size=512)
    write_token_shards([texts[:20], texts[20:36]], tok, tmp / "shards", shard_tokens=100_000)
    write_token_shards([texts[36:]], tok, tmp / "heldout")
    write_token_shards([texts[:8]], tok, tmp / "small")
    other = [r["text"] for r in read_jsonl(shared_data / "corpora" / "nltk_inaugural.jsonl", limit=30)]
    write_token_shards([other], tok, tmp / "other")
    return {"dir": tmp, "shards": tmp / "shards", "heldout": tmp / "heldout", "other": tmp / "other",
            "small": tmp / "small"}
