"""The shell path end to end: curate mix → tokenizer train → tokenize → train (→ resume)."""
from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import read_jsonl

from curate.commands.mix import command as mix
from curate.commands.tokenize import command as tokenize
from curate.commands.tokenize import tokenizer
from curate.commands.train import command as train


def test_mix_tokenize_train_from_the_shell(shared_data, tmp_path):
    docs = read_jsonl(shared_data / "corpora" / "nltk_state_union.jsonl", limit=12)
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"id": d["id"], "text": d["text"][:4000]}) + "\n"
                                                 for d in docs))
    (tmp_path / "mix.yaml").write_text("seed: 1\ntotal_tokens: 20000\n"
                                       "sources:\n  sotu: {path: docs.jsonl, weight: 1}\n")
    (tmp_path / "train.yaml").write_text(
        "out: run\ndevice: cpu\ncpu_threads: 1\nmodel: {n_layer: 1, n_head: 1, d_model: 16, context: 16}\n"
        "optim: {max_steps: 3, warmup_steps: 1}\nbatch: {micro_batch: 2}\ndata: {shards: shards, heldout_contexts: 4}\n"
        "log: {every: 1, progress: false}\n")
    run = CliRunner()
    r = run.invoke(mix, [str(tmp_path / "mix.yaml"), "-o", str(tmp_path / "mix")])
    assert r.exit_code == 0, r.output
    assert "sotu" in r.output and "(estimate: utf-8 bytes / 4.0)" in r.output
    r = run.invoke(tokenizer, ["train", str(tmp_path / "mix"), "-o", str(tmp_path / "tok.json"), "--vocab-size", "320"])
    assert r.exit_code == 0, r.output
    r = run.invoke(tokenize, [str(tmp_path / "mix"), "-t", str(tmp_path / "tok.json"), "-o", str(tmp_path / "shards")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "shards" / "_manifest.json").read_text())
    assert manifest["documents"] == json.loads((tmp_path / "mix" / "_manifest.json").read_text())["documents"]
    r = run.invoke(train, [str(tmp_path / "train.yaml")])
    assert r.exit_code == 0, r.output
    assert "trained to step 3" in r.output and "heldout_loss=" in r.output
    r = run.invoke(train, [str(tmp_path / "train.yaml"), "--set", "optim.max_steps=5"])
    assert r.exit_code == 0 and "trained to step 5" in r.output
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if e["event"] == "train"] == [1, 2, 3, 4, 5]  # resumed at step 4
    r = run.invoke(train, [str(tmp_path / "train.yaml"), "--set", "optim.max_step=5"])
    assert r.exit_code != 0 and "max_step" in str(r.exception)
