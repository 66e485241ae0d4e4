"""One run per output for `curate mix`, `tokenize`, `train` and `ablate`: the lease `curate run`
takes (curate/engine/lease.py), through the real CLI, locally and on a real S3-API server (moto)."""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import s3server
from click.testing import CliRunner
from helpers import read_jsonl

from curate.cli import main
from curate.core import CurateError
from curate.engine.lease import LEASE_DIR, acquire, beside_dir, describe_holder
from curate.io import fs
from curate.train import store


def _refusal(out: str, holder) -> str:
    """The one-line refusal naming ``holder`` (as `curate run` prints it)."""
    return (re.escape(f"error: {out} is being written by {holder.record['owner']} pid {holder.record['pid']} since ")
            + r"\S+, last heartbeat \d+ s ago; if that run is dead, wait until the heartbeat is 600 s old "
            + r"or pass --take-over\n$")


@pytest.fixture(scope="module")
def spec(shared_data, tmp_path_factory):
    """A mixture spec over 12 real documents (token counts estimated: no tokenizer needed)."""
    root = tmp_path_factory.mktemp("mixspec")
    docs = read_jsonl(shared_data / "corpora" / "nltk_state_union.jsonl", limit=12)
    (root / "docs.jsonl").write_text("".join(json.dumps({"id": d["id"], "text": d["text"][:3000]}) + "\n"
                                             for d in docs))
    (root / "mix.yaml").write_text("seed: 1\ntotal_tokens: 6000\nsources:\n  sotu: {path: docs.jsonl, weight: 1}\n")
    return root / "mix.yaml"


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "mix")
    s3server.start()
    return f"s3://{s3server.BUCKET}/cmd-lease-{uuid.uuid4().hex[:12]}/mix"


def test_second_mix_on_a_leased_output_refuses_at_once_naming_the_holder(spec, output):
    held = acquire(output, owner_command="curate mix (first)", records=beside_dir(output), stale_after=600,
                   heartbeat_every=0)
    result = CliRunner().invoke(main, ["mix", str(spec), "-o", output])
    assert result.exit_code == 2 and re.fullmatch(_refusal(output, held), result.output), result.output
    assert not store.committed(output) and not fs.exists(output)  # refused before any work
    held.release()

    result = CliRunner().invoke(main, ["mix", str(spec), "-o", output])
    assert result.exit_code == 0, result.output
    assert store.committed(output) and LEASE_DIR not in fs.listdir(output)  # the records live beside it
    assert describe_holder(output, beside_dir(output)) is None  # released at the end
    assert fs.listdir(beside_dir(output)) == ["00000001.json", "00000002.json"]


@pytest.mark.parametrize("how", ["stale heartbeat", "--take-over"])
def test_a_dead_holders_lease_is_taken_over(spec, tmp_path, how):
    out = str(tmp_path / "mix")
    held = acquire(out, owner_command="curate mix (died)", records=beside_dir(out), stale_after=600,
                   heartbeat_every=0)
    if how == "stale heartbeat":  # its last heartbeat is older than its own timeout
        fs.write_bytes(held.uri, json.dumps({**held.record, "heartbeat": time.time() - 601}).encode())
    args = ["mix", str(spec), "-o", out] + (["--take-over"] if how == "--take-over" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"taking over the lease on {out} from {held.record['owner']} pid {held.record['pid']}" in result.output
    assert store.committed(out)
    with pytest.raises(CurateError, match=rf"lost the lease on {re.escape(out)}: it is now held by .*generation 2"):
        held.check()


def test_a_run_that_lost_its_lease_does_not_publish(spec, tmp_path):
    from curate.train.mix import build_mixture, load_spec

    out = str(tmp_path / "mix")
    held = acquire(out, owner_command="slow", records=beside_dir(out), heartbeat_every=0)
    thief = acquire(out, owner_command="thief", records=beside_dir(out), take_over=True, heartbeat_every=0)
    with store.guarded(held.check), pytest.raises(CurateError, match="lost the lease"):
        build_mixture(load_spec(spec), out)
    assert not fs.exists(out)  # the built directory was discarded, not renamed into place
    thief.release()


def test_tokenize_train_and_ablate_refuse_a_leased_output(tmp_path, monkeypatch):
    (tmp_path / "train.yaml").write_text("out: run\ndevice: cpu\ndata: {shards: shards}\n")
    (tmp_path / "ablate.yaml").write_text("token_budget: 1000\nselections: {a: sel.jsonl}\n")
    monkeypatch.chdir(tmp_path)  # relative outputs resolve against the working directory
    cases = {  # command line, its output, where its lease records live
        "tokenize": (["tokenize", "mix", "-t", "tok.json", "-o", "shards"], "shards", "beside"),
        "train": (["train", "train.yaml"], "run", "inside"),
        "ablate": (["ablate", "ablate.yaml", "-o", "abl"], "abl", "inside"),
    }
    for name, (args, rel, where) in cases.items():
        out = str(tmp_path / rel)
        held = acquire(out, owner_command=f"curate {name} (first)", stale_after=600, heartbeat_every=0,
                       records=beside_dir(out) if where == "beside" else None)
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and re.fullmatch(_refusal(out, held), result.output), (name, result.output)
        held.release()


def test_ablate_with_s3_selections_heldout_and_output(shared_data, tmp_path):
    """Every path of an ablation on the S3 server: the parts are committed there, the results
    uploaded, the output's lease taken and released; a missing selection fails in one line first."""
    s3server.start()
    root = f"s3://{s3server.BUCKET}/ablate-{uuid.uuid4().hex[:12]}"
    for name, corpus, n in [("news", "reuters21578.jsonl.gz", 40), ("held", "enwiki_gensim.jsonl", 3)]:
        rows = read_jsonl(shared_data / "corpora" / corpus, limit=n)
        fs.write_text(f"{root}/{name}.jsonl", "".join(json.dumps({"id": r["id"], "text": r["text"][:2000]}) + "\n"
                                                      for r in rows))
    spec = """
seed: 0
token_budget: 320
tokenizer: {{vocab_size: 300}}
heldout: {root}/held.jsonl
selections: {{news: {selection}}}
train:
  device: cpu
  cpu_threads: 1
  model: {{n_layer: 1, n_head: 1, d_model: 16, context: 16}}
  optim: {{lr: 0.01, min_lr: 0.001, warmup_steps: 1}}
  batch: {{micro_batch: 4}}
  eval: {{heldout_batches: 2}}
  log: {{every: 5, progress: false}}
"""
    (tmp_path / "missing.yaml").write_text(spec.format(root=root, selection=f"{root}/nothing.jsonl"))
    result = CliRunner().invoke(main, ["ablate", str(tmp_path / "missing.yaml"), "-o", f"{root}/out0"])
    assert result.exit_code == 2 and result.output == (
        f"error: ablation spec: selection 'news' {root}/nothing.jsonl does not exist\n")
    assert fs.listdir(f"{root}/out0") in ([], [LEASE_DIR])  # no part was built

    (tmp_path / "ablate.yaml").write_text(spec.format(root=root, selection=f"{root}/news.jsonl"))
    out = f"{root}/out"
    result = CliRunner().invoke(main, ["ablate", str(tmp_path / "ablate.yaml"), "-o", out, "--no-plot"])
    assert result.exit_code == 0, result.output
    rows = json.loads(fs.read_text(f"{out}/results.json"))
    assert [r["selection"] for r in rows] == ["news"] and rows[0]["train_tokens"] == 320  # 5 steps of 4 x 16
    assert 3.0 < rows[0]["heldout_loss"] < 7.0 and "| news |" in fs.read_text(f"{out}/results.md")
    for part in ("heldout_shards", "news/mix", "news/shards"):
        assert store.committed(f"{out}/{part}"), part
    assert fs.exists(f"{out}/tokenizer.json.sha256") and fs.exists(f"{out}/news/run/log.jsonl")
    assert describe_holder(out) is None and fs.listdir(f"{out}/{LEASE_DIR}") == ["00000001.json"]


def test_a_command_whose_lease_is_taken_over_stops_with_the_lost_lease_error(tmp_path):
    """The heartbeat thread notices the takeover and interrupts the work (here: a wait loop)."""
    from curate.engine.lease import holding

    out = str(tmp_path / "out")
    lost = rf"^lost the lease on {re.escape(out)}: it is now held by .* \(generation 2\)"
    with pytest.raises(CurateError, match=lost):
        with holding(out, stale_after=0.4):  # a heartbeat (and ownership check) every 0.1 s
            thief = acquire(out, owner_command="thief", take_over=True, heartbeat_every=0)
            for _ in range(600):  # ends by the interrupt, long before the bound
                time.sleep(0.05)
    assert describe_holder(out)["command"] == "thief"
    thief.release()


def test_a_mixture_at_a_bucket_root_is_refused_in_one_line(spec):
    s3server.start()
    bucket = f"s3://{s3server.BUCKET}"
    result = CliRunner().invoke(main, ["mix", str(spec), "-o", bucket])
    assert result.exit_code == 2 and result.output == (
        f"error: {bucket} is a bucket root; write this output under a prefix ({bucket}/NAME) "
        "so its lease can live beside it\n")
