"""Integrity: sidecars, atomic files/directories, and every loader refusing a tampered file.

Each loader gets a real small artefact built here (a BPE tokenizer, a fastText model, a
GPT-2 in Hugging Face format, a training checkpoint): the good file loads, the same file with
one byte changed is refused with a one-line CurateError, and so is a file without a sidecar.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import read_jsonl, tamper

from curate.core import CurateError
from curate.integrity import (
    atomic_dir,
    atomic_file,
    expected_sha256,
    load_fasttext,
    load_tokenizer,
    read_sidecar,
    sha256_file,
    sidecar_path,
    verify_file,
    write_sidecar,
)

TEXTS = [f"document {i}: the quick brown fox jumps over the lazy dog, then rests by the river."
         for i in range(40)] + ["Python is a programming language; functions return values."] * 20


def copy_without_sidecar(path: Path, dest: Path) -> Path:
    shutil.copyfile(path, dest)
    return dest


# ------------------------------------------------------------------ sidecars and atomic writes


def test_sidecar_round_trip_and_sha256sum_format(tmp_path):
    f = tmp_path / "m.bin"
    f.write_bytes(b"hello")
    digest = write_sidecar(f)
    assert digest == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert sidecar_path(f).read_text() == f"{digest}  m.bin\n"
    assert read_sidecar(f) == expected_sha256(f) == verify_file(f) == sha256_file(f)
    staged = tmp_path / "staged"
    staged.write_bytes(b"hello")
    write_sidecar(staged, tmp_path / "final.bin")  # hash the staged file, name the final one
    assert (tmp_path / "final.bin.sha256").read_text() == f"{digest}  final.bin\n"
    sidecar_path(f).write_text("not-a-digest  m.bin\n")
    with pytest.raises(CurateError, match="does not start with a sha256"):
        verify_file(f)
    with pytest.raises(CurateError, match="not found"):
        verify_file(tmp_path / "missing.bin")


def test_atomic_dir_replaces_on_success_and_cleans_up_on_error(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind
    assert [p.name for p in final.iterdir()] == ["a"]  # the old output is untouched
    with atomic_dir(final) as tmp:
        (tmp / "c").write_text("3")
    assert [p.name for p in final.iterdir()] == ["c"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "x.parquet"
    with atomic_file(target) as tmp:
        tmp.write_text("ok")
    with pytest.raises(ValueError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert target.read_text() == "ok" and [p.name for p in tmp_path.iterdir()] == ["x.parquet"]


def test_mixture_and_token_shards_leave_no_temp_dir_on_error(tmp_path, monkeypatch):
    from curate.train import mix
    from curate.train.shards import write_token_shards
    from curate.train.tokenizer import train_tokenizer

    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))

    def disk_full(*args):
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:  # fail after the data shards are written into the temp dir
        patch.setattr(mix, "_manifest", disk_full)
        with pytest.raises(OSError, match="No space"):
            mix.build_mixture(mix.parse_spec({"sources": {"web": str(src)}}), tmp_path / "mix")
    tok = train_tokenizer(TEXTS, tmp_path / "tok" / "tokenizer.json", vocab_size=300)

    def failing():
        yield TEXTS[:5]
        raise RuntimeError("reader died")

    with pytest.raises(RuntimeError, match="reader died"):
        write_token_shards(failing(), tok, tmp_path / "shards")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "tok"]


# ------------------------------------------------------------------ tokenizers


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    from curate.train.tokenizer import train_tokenizer

    return train_tokenizer(TEXTS, tmp_path_factory.mktemp("tok") / "tokenizer.json", vocab_size=300)


def test_tokenizer_loader_used_by_budgets_mixtures_and_shards(tokenizer, tmp_path):
    from curate.quality.tokens import count_tokens
    from curate.train.mix import parse_spec, token_counter
    from curate.train.shards import write_token_shards
    from curate.train.tokenizer import EOS

    tok = load_tokenizer(tokenizer, required_token=EOS)
    assert tok.token_to_id(EOS) == 0 and load_tokenizer(tokenizer.parent).to_str() == tok.to_str()
    n = len(tok.encode("the quick brown fox", add_special_tokens=False).ids)
    assert count_tokens(["the quick brown fox"], str(tokenizer)) == [n]
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "x"}) + "\n")
    spec = parse_spec({"sources": {"s": str(src)}, "tokenizer": str(tokenizer)})
    assert token_counter(spec)(["the quick brown fox"]).tolist() == [n + 1]

    bad = tmp_path / "bad" / "tokenizer.json"
    bad.parent.mkdir()
    shutil.copyfile(tokenizer, bad)
    shutil.copyfile(sidecar_path(tokenizer), sidecar_path(bad))
    tamper(bad)
    for load in (lambda: load_tokenizer(bad), lambda: count_tokens(["x"], str(bad)),
                 lambda: token_counter(parse_spec({"sources": {"s": str(src)}, "tokenizer": str(bad)})),
                 lambda: write_token_shards([["x"]], bad, tmp_path / "shards")):
        with pytest.raises(CurateError, match=r"tokenizer .*tokenizer.json does not match its sidecar"):
            load()
    bare = copy_without_sidecar(tokenizer, tmp_path / "bare.json")
    with pytest.raises(CurateError, match="no sha256 sidecar bare.json.sha256; .*sha256sum"):
        count_tokens(["x"], str(bare))


def test_a_process_keeps_only_the_most_recently_used_tokenizers(tokenizer, tmp_path):
    """Loaded models are kept per process (one load per Spark worker), but only the
    ``LOADED_LIMIT`` most recently used: a long-lived worker must not hold every model it saw."""
    from curate import integrity

    copies = []
    for i in range(integrity.LOADED_LIMIT + 1):
        path = tmp_path / f"t{i}" / "tokenizer.json"
        path.parent.mkdir()
        shutil.copyfile(tokenizer, path)
        shutil.copyfile(sidecar_path(tokenizer), sidecar_path(path))
        copies.append(path)
    first = load_tokenizer(copies[0])
    assert load_tokenizer(copies[0]) is first  # a hit: not loaded again
    for path in copies[1:]:
        load_tokenizer(path)
    kept = [key[1] for key in integrity._LOADED if key[0] == "tokenizer"]
    assert len(integrity._LOADED) <= integrity.LOADED_LIMIT and str(copies[0].resolve()) not in kept
    assert str(copies[-1].resolve()) in kept
    assert load_tokenizer(copies[0]) is not first  # dropped, so loaded again (and verified again)


def test_token_shards_carry_a_verified_tokenizer(tokenizer, tmp_path):
    from curate.train.shards import write_token_shards

    man = write_token_shards([TEXTS[:10]], tokenizer, tmp_path / "shards")
    assert man["tokenizer"]["sha256"] == verify_file(tmp_path / "shards" / "tokenizer.json") == sha256_file(tokenizer)
    tamper(tmp_path / "shards" / "tokenizer.json")
    with pytest.raises(CurateError, match="does not match its sidecar"):
        load_tokenizer(tmp_path / "shards")


# ------------------------------------------------------------------ fastText models


@pytest.fixture(scope="module")
def fasttext_model(tmp_path_factory, shared_data) -> Path:
    """Python docs (hq) vs movie reviews (lq), 60 each: a 4.6 MB model trained in seconds."""
    from curate.quality.classifier import train_classifier

    def texts(name: str) -> list[str]:
        return [d["text"] for d in read_jsonl(shared_data / "corpora" / name, limit=60)]

    out = tmp_path_factory.mktemp("ft") / "q.bin"
    train_classifier(texts("python_docs.jsonl"), texts("nltk_movie_reviews.jsonl"), out,
                     epoch=2, dim=16, bucket=50_000, holdout=0.0)
    return out


def test_fasttext_loaders_refuse_tampered_models(fasttext_model, tmp_path):
    import filters
    from curate.quality.classifier import load_classifier

    model, digest = load_fasttext(fasttext_model)
    assert digest == sha256_file(fasttext_model) and set(model.get_labels()) == {"__label__hq", "__label__lq"}
    clf = load_classifier(fasttext_model)
    assert set(clf.labels) == {"hq", "lq"}
    assert clf.predict_proba(["def main(): return sorted(items, key=len)"])[0] > 0.5
    assert filters.build("lang_id", {"model": str(fasttext_model)}).score({"text": "fox"})["language"] in ("hq", "lq")

    bad = tmp_path / "bad.bin"
    shutil.copyfile(fasttext_model, bad)
    write_sidecar(fasttext_model, bad)  # the sidecar of the good file...
    tamper(bad)  # ...for a corrupted copy
    with pytest.raises(CurateError, match="model .*bad.bin does not match its sidecar"):
        load_classifier(bad)
    with pytest.raises(CurateError, match="lang_id: model .*bad.bin does not match its sidecar"):
        filters.build("lang_id", {"model": str(bad)}).setup()
    bare = copy_without_sidecar(fasttext_model, tmp_path / "bare.bin")
    with pytest.raises(CurateError, match="no sha256 sidecar"):
        load_classifier(bare)


# ------------------------------------------------------------------ causal LMs (loss matrix)


def tiny_causal_lm(out: Path) -> Path:
    """A 1-layer GPT-2 with a byte-level BPE tokenizer, saved as safetensors in HF format."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    config = GPT2Config(vocab_size=len(fast), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out


def test_loss_matrix_models_are_verified_before_loading(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from curate.pplcorr.lossmatrix import load_causal_lm, text_losses

    path = tiny_causal_lm(tmp_path / "lm")
    weights = path / "model.safetensors"
    with pytest.raises(CurateError, match="model weights .*model.safetensors has no sha256 sidecar"):
        load_causal_lm(path, "cpu")
    write_sidecar(weights)
    model, tok = load_causal_lm(path, "cpu")
    nll, count = text_losses(model, tok, ["the quick brown fox"], max_length=32)
    assert count[0] > 0 and nll[0] > 0
    tamper(weights)
    with pytest.raises(CurateError, match="model.safetensors does not match its sidecar"):
        load_causal_lm(path, "cpu")


# ------------------------------------------------------------------ training checkpoints


def test_checkpoints_are_verified_before_resuming(tmp_path):
    torch = pytest.importorskip("torch")
    from curate.train.loop import CHECKED_FILES, Dist, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(3, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path, 7, model, opt, {"step": 7}, Dist(), "cpu", keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000007"]
    for file in CHECKED_FILES:
        assert read_sidecar(path / file) == sha256_file(path / file)
    fresh = torch.nn.Linear(4, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    assert load_checkpoint(path, fresh, fresh_opt, Dist(), "cpu") == 7
    assert torch.equal(fresh.weight, model.weight)
    tamper(path / "model.safetensors")
    with pytest.raises(CurateError, match="checkpoint file .*model.safetensors does not match its sidecar"):
        load_checkpoint(path, fresh, fresh_opt, Dist(), "cpu")
