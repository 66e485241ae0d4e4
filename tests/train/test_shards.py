"""Tokenizer training and token shards: lossless round trip, EOS, offsets, sha256, mmap reads."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import read_jsonl

from curate.core import CurateError
from curate.integrity import load_tokenizer, sha256_file
from curate.train.shards import TokenShards, token_dtype, write_token_shards
from curate.train.tokenizer import EOS, sample_texts, train_tokenizer


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    return [r["text"] for r in read_jsonl(shared_data / "corpora" / "nltk_webtext.jsonl", limit=60)]


@pytest.fixture(scope="module")
def tokenizer(texts, tmp_path_factory):
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok") / "tokenizer.json", vocab_size=600)


def test_tokenizer_is_deterministic_and_checked(texts, tokenizer, tmp_path):
    again = train_tokenizer(texts, tmp_path / "again.json", vocab_size=600)
    assert sha256_file(again) == sha256_file(tokenizer)
    tok = load_tokenizer(tokenizer)
    assert tok.get_vocab_size() == 600 and tok.token_to_id(EOS) == 0
    sample = "Données: naïve café – 東京 😀\ttabs\r\n"
    assert tok.decode(tok.encode(sample).ids) == sample  # byte-level: nothing is lost
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(again.read_bytes().replace(b'"merges"', b'"merges" '))
    (tmp_path / "tampered.json.sha256").write_text((tmp_path / "again.json.sha256").read_text())
    with pytest.raises(CurateError, match="sha256"):
        load_tokenizer(tampered)


def test_sample_is_seeded_and_capped():
    batches = [[f"doc {i}" for i in range(j, j + 50)] for j in range(0, 200, 50)]
    a = list(sample_texts(batches, fraction=0.3, seed=1))
    assert a == list(sample_texts(batches, fraction=0.3, seed=1)) and 30 < len(a) < 90
    assert a != list(sample_texts(batches, fraction=0.3, seed=2))
    assert len(list(sample_texts(batches, max_chars=20))) == 4


def test_shards_round_trip_in_order(texts, tokenizer, tmp_path):
    batches = [texts[i:i + 7] for i in range(0, len(texts), 7)]
    man = write_token_shards(batches, tokenizer, tmp_path / "shards", shard_tokens=20_000, source="webtext")
    tok = load_tokenizer(tmp_path / "shards")  # the shard dir carries its tokenizer
    assert len(man["shards"]) > 2 and man["documents"] == len(texts) and man["dtype"] == "uint16"
    shards = TokenShards(tmp_path / "shards", verify=True)
    assert len(shards) == man["tokens"] == sum(s["tokens"] for s in man["shards"])
    offsets = shards.document_offsets()
    assert len(offsets) == len(texts) + 1
    for i, text in enumerate(texts):
        doc = shards.slice(int(offsets[i]), int(offsets[i + 1]))
        assert doc[-1] == shards.eos_id and shards.eos_id not in doc[:-1]
        assert tok.decode(doc[:-1].tolist()) == text
    whole = np.concatenate([np.fromfile(tmp_path / "shards" / s["file"], dtype=np.uint16) for s in man["shards"]])
    assert np.array_equal(shards.slice(5, len(shards) - 3), whole[5:-3])  # reads across shard boundaries
    for s in man["shards"]:
        assert s["sha256"] == sha256_file(tmp_path / "shards" / s["file"])
    manifest = json.loads((tmp_path / "shards" / "_manifest.json").read_text())
    assert manifest["fingerprint"] == shards.fingerprint


def test_corrupt_shard_and_existing_output_are_refused(texts, tokenizer, tmp_path):
    write_token_shards([texts[:5]], tokenizer, tmp_path / "s")
    with pytest.raises(CurateError, match="exists"):
        write_token_shards([texts[:5]], tokenizer, tmp_path / "s")
    with open(tmp_path / "s" / "shard-00000.bin", "r+b") as fh:
        fh.write(b"\x01\x02")
    with pytest.raises(CurateError, match="sha256"):
        TokenShards(tmp_path / "s", verify=True)


def test_dtype_follows_vocab_size():
    assert token_dtype(50_257) == np.uint16 and token_dtype(65_536) == np.uint16
    assert token_dtype(100_277) == np.uint32


@pytest.mark.slow
def test_spark_path_gives_the_same_token_stream(texts, tokenizer, tmp_path, spark):
    from curate.train.mix import build_mixture, iter_mixture_texts, parse_spec
    from curate.train.shards import tokenize_spark

    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i:03d}", "text": t}) + "\n" for i, t in enumerate(texts[:20])))
    build_mixture(parse_spec({"sources": {"web": str(src)}, "seed": 4}), tmp_path / "mix")
    local = write_token_shards(iter_mixture_texts(tmp_path / "mix"), tokenizer, tmp_path / "local")
    dist = tokenize_spark(spark, tmp_path / "mix", tokenizer, tmp_path / "spark", docs_per_shard=8)
    assert len(dist["shards"]) == 3 and dist["documents"] == local["documents"]
    a, b = TokenShards(tmp_path / "local"), TokenShards(tmp_path / "spark", verify=True)
    assert np.array_equal(a.slice(0, len(a)), b.slice(0, len(b)))
    assert np.array_equal(a.document_offsets(), b.document_offsets())
    with pytest.raises(CurateError, match="not a `curate mix` output"):
        tokenize_spark(spark, tmp_path / "local", tokenizer, tmp_path / "x")
