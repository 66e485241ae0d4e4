"""The training side over a real S3-API server (moto on 127.0.0.1): mixture sources, the mixture,
the tokenizer, token shards, checkpoints and the log all under ``s3://``, through the shell
commands, giving the bytes and losses of the same commands on local files; a run stopped
mid-way resumes from its ``s3://`` checkpoint with exactly the losses of an uninterrupted run.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import read_jsonl

from curate.commands.mix import command as mix
from curate.commands.tokenize import command as tokenize
from curate.commands.tokenize import tokenizer
from curate.commands.train import command as train_cmd
from curate.io import fs
from curate.train import store
from curate.train.shards import TokenShards

s3server = pytest.importorskip("s3server")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

TRAIN_YAML = ("out: {out}\ndevice: cpu\ncpu_threads: 1\nseed: 3\n"
              "model: {{n_layer: 1, n_head: 1, d_model: 16, context: 16}}\n"
              "optim: {{max_steps: 3, warmup_steps: 1}}\nbatch: {{micro_batch: 2}}\n"
              "data: {{shards: {shards}, heldout_contexts: 4}}\ncheckpoint: {{every: 2}}\n"
              "log: {{every: 1, progress: false, tensorboard: false}}\n")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    s3server.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("CURATE_CACHE", str(tmp_path_factory.mktemp("cache")))  # fetched shards and checkpoints
    yield f"s3://{s3server.BUCKET}/train-uri"
    mp.undo()


def invoke(command, args: list[str]) -> str:
    r = CliRunner().invoke(command, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


@pytest.fixture(scope="module")
def both(bucket, shared_data, tmp_path_factory) -> dict:
    """The same shell session twice: on local files and on s3:// (sources, spec, every output)."""
    docs = read_jsonl(shared_data / "corpora" / "nltk_state_union.jsonl", limit=12)
    src = "".join(json.dumps({"id": d["id"], "text": d["text"][:3000]}) + "\n" for d in docs)
    spec = "seed: 1\ntotal_tokens: 16000\nsources:\n  sotu: {path: docs.jsonl, weight: 1}\n"
    local = tmp_path_factory.mktemp("local")
    roots = {"local": str(local), "s3": bucket}
    for root in roots.values():
        fs.write_text(fs.join(root, "docs.jsonl"), src)
        fs.write_text(fs.join(root, "mix.yaml"), spec)
    for name, root in roots.items():
        invoke(mix, [fs.join(root, "mix.yaml"), "-o", fs.join(root, "mix")])
        invoke(tokenizer, ["train", fs.join(root, "mix"), "-o", fs.join(root, "tok.json"), "--vocab-size", "300"])
        invoke(tokenize, [fs.join(root, "mix"), "-t", fs.join(root, "tok.json"), "-o", fs.join(root, "shards"),
                          "--shard-tokens", "4000"])
        yaml_path = local / f"train-{name}.yaml"
        yaml_path.write_text(TRAIN_YAML.format(out=fs.join(root, "run"), shards=fs.join(root, "shards")))
        invoke(train_cmd, [yaml_path])
    return roots


def published_files(root: str, name: str) -> dict[str, bytes]:
    """The files a committed manifest of ``root/name`` lists, by relative name, and the manifest."""
    target = fs.join(root, name)
    manifest = store.read_json(fs.join(target, "_manifest.json"))
    base = store.base(target, manifest)
    return {r: fs.read_bytes(fs.join(base, r)) for r in fs.list_files(base)[1] if r != "_manifest.json"}


def test_mixture_tokenizer_and_shards_on_s3_have_the_local_bytes(both):
    local, s3 = both["local"], both["s3"]
    for name in ("mix", "shards"):
        mine, theirs = published_files(s3, name), published_files(local, name)
        assert sorted(mine) == sorted(theirs) and mine == theirs
        lm = store.read_json(fs.join(local, name, "_manifest.json"))
        sm = store.read_json(fs.join(s3, name, "_manifest.json"))
        assert sm.pop("root").startswith("_attempts/") and "root" not in lm
        if name == "mix":  # the source path differs by nature; everything else is equal
            assert {k: v for k, v in lm.items() if k != "sources"} == {k: v for k, v in sm.items() if k != "sources"}
            assert sm["sources"]["sotu"]["path"] == fs.join(s3, "docs.jsonl")
        else:
            assert {k: v for k, v in lm.items() if k != "source"} == {k: v for k, v in sm.items() if k != "source"}
    assert len(published_files(local, "shards")) >= 4  # several token shards, each with its offsets
    assert fs.read_bytes(fs.join(s3, "tok.json")) == fs.read_bytes(fs.join(local, "tok.json"))
    assert fs.read_bytes(fs.join(s3, "tok.json.sha256")) == fs.read_bytes(fs.join(local, "tok.json.sha256"))
    a, b = TokenShards(fs.join(s3, "shards")), TokenShards(fs.join(local, "shards"))
    assert a.fingerprint == b.fingerprint and len(a) == len(b) > 10_000
    assert (a.slice(0, len(a)) == b.slice(0, len(b))).all()
    assert (a.document_offsets() == b.document_offsets()).all()


def test_rebuild_on_s3_replaces_the_attempt_and_existing_output_is_refused(both):
    s3 = both["s3"]
    before = store.read_json(fs.join(s3, "mix", "_manifest.json"))["root"]
    r = CliRunner().invoke(mix, [fs.join(s3, "mix.yaml"), "-o", fs.join(s3, "mix")])
    assert r.exit_code != 0 and "exists; pass --force" in str(r.exception)
    invoke(mix, [fs.join(s3, "mix.yaml"), "-o", fs.join(s3, "mix"), "--force"])
    after = store.read_json(fs.join(s3, "mix", "_manifest.json"))["root"]
    assert after != before and fs.listdir(fs.join(s3, "mix", "_attempts")) == [after.split("/")[1]]
    assert published_files(s3, "mix") == published_files(both["local"], "mix")


def train_events(root: str) -> list[dict]:
    return [json.loads(line) for line in fs.read_text(fs.join(root, "run", "log.jsonl")).splitlines()]


def test_training_on_s3_matches_local_and_resumes_from_an_s3_checkpoint(both):
    local, s3 = both["local"], both["s3"]
    # 3 steps run, a checkpoint at step 2 and at the end (3); the log and checkpoints are in s3
    ckpts = fs.join(s3, "run", "checkpoints")
    assert fs.read_text(fs.join(ckpts, "latest")).strip() == "step-00000003"
    assert fs.listdir(ckpts) == ["latest", "step-00000002", "step-00000003"]
    meta = store.read_json(fs.join(ckpts, "step-00000003", "meta.json"))
    assert meta["step"] == 3 and meta["root"].startswith("_attempts/")
    assert sorted(fs.listdir(fs.join(ckpts, "step-00000003", meta["root"]))) == [
        "model.safetensors", "model.safetensors.sha256", "optim.pt", "optim.pt.sha256", "rng-rank0.pt"]
    assert fs.read_bytes(fs.join(ckpts, "step-00000003", meta["root"], "model.safetensors")) == \
        (fs.read_bytes(fs.join(local, "run", "checkpoints", "step-00000003", "model.safetensors")))
    # resume both to step 5 from their step-3 checkpoints: the same losses, bitwise
    for name in both:
        invoke(train_cmd, [fs.join(local, f"train-{name}.yaml"), "--set", "optim.max_steps=5"])
    events = {name: [e for e in train_events(root) if e["event"] == "train"] for name, root in both.items()}
    assert [e["step"] for e in events["s3"]] == [1, 2, 3, 4, 5]  # the s3 log was fetched and appended to
    assert [e["loss"] for e in events["s3"]] == [e["loss"] for e in events["local"]]
    assert fs.read_text(fs.join(ckpts, "latest")).strip() == "step-00000005"
    assert fs.listdir(ckpts) == ["latest", "step-00000004", "step-00000005"]  # keep: 2


def test_a_corrupt_s3_checkpoint_is_refused(both):
    """The sidecar check holds for fetched checkpoints: a replaced object is never loaded."""
    from curate.core import CurateError
    from curate.train.config import load_config
    from curate.train.loop import train

    s3, local = both["s3"], both["local"]
    step = fs.join(s3, "run", "checkpoints", fs.read_text(fs.join(s3, "run", "checkpoints", "latest")).strip())
    optim = fs.join(step, store.read_json(fs.join(step, "meta.json"))["root"], "optim.pt")
    good = fs.read_bytes(optim)
    fs.write_bytes(optim, good[:-8] + b"\0" * 8)
    try:
        cfg = load_config(fs.join(local, "train-s3.yaml")).replace(optim={"max_steps": 9})
        with pytest.raises(CurateError, match="optim.pt does not match its sidecar"):
            train(cfg)
    finally:
        fs.write_bytes(optim, good)


@pytest.mark.slow
def test_spark_tokenize_reads_and_writes_s3_in_the_tasks(both, spark):
    """``curate tokenize --spark``: tasks read the s3 mixture and write their shards straight into
    the output's attempt prefix; the driver commits the manifest last. Same stream as locally."""
    import os

    from curate.train.shards import tokenize_spark

    s3, local = both["s3"], both["local"]
    env = spark.sparkContext.environment  # the tasks reach s3:// with these (spark.executorEnv)
    saved = dict(env)
    env.update(s3server.aws_env(os.environ["AWS_ENDPOINT_URL"]))
    try:
        remote = tokenize_spark(spark, fs.join(s3, "mix"), fs.join(s3, "tok.json"), fs.join(s3, "spark-shards"),
                                docs_per_shard=4)
    finally:
        env.clear()
        env.update(saved)
    here = tokenize_spark(spark, fs.join(local, "mix"), fs.join(local, "tok.json"), fs.join(local, "spark-shards"),
                          docs_per_shard=4)
    assert remote["fingerprint"] == here["fingerprint"] and len(remote["shards"]) == len(here["shards"]) >= 3
    assert published_files(s3, "spark-shards") == published_files(local, "spark-shards")
    a, b = TokenShards(fs.join(s3, "spark-shards")), TokenShards(fs.join(local, "shards"))
    assert (a.slice(0, len(a)) == b.slice(0, len(b))).all()  # the single-process stream
