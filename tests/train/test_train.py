"""The training loop on CPU: loss falls on real text, bitwise resume, refusal of changed data,
2-process DDP on gloo with disjoint data covering the epoch."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, tiny_train_config

from curate.core import CurateError
from curate.train.config import TrainConfig, load_config
from curate.train.data import ContextStream, Layout
from curate.train.shards import TokenShards


def test_lr_warms_up_then_decays_to_min():
    from curate.train.loop import lr_at

    cfg = TrainConfig().optim
    lrs = [lr_at(s, cfg) for s in range(cfg.max_steps)]
    assert lrs[0] == pytest.approx(cfg.lr / cfg.warmup_steps)
    assert lrs[cfg.warmup_steps - 1] == pytest.approx(cfg.lr)
    assert all(a >= b for a, b in zip(lrs[cfg.warmup_steps:], lrs[cfg.warmup_steps + 1:]))
    assert lr_at(cfg.max_steps, cfg) == pytest.approx(cfg.min_lr)


def test_layout_and_stream_give_every_context_once_per_epoch(corpus):
    stream = ContextStream(TokenShards(corpus["shards"]), 32, seed=5)
    layout = Layout(world=3, micro_batch=4, grad_accum=2)
    n = stream.count
    seen = [stream.context_index(s) for step in range(2 * n // 24 + 1) for m in range(2) for r in range(3)
            for s in layout.samples(step, m, r)]
    assert sorted(seen[:n]) == list(range(n))  # epoch 0 is a permutation
    assert seen[:n] != list(range(n))  # ...not the stream order
    assert sorted(seen[n:2 * n]) == list(range(n))
    window = stream.window(3)
    assert len(window) == 33 and np.array_equal(window, stream.shards.slice(96, 129))


def test_loss_falls_and_evaluation_works(corpus, tmp_path):
    from safetensors.torch import load_model

    from curate.integrity import load_tokenizer
    from curate.train.evaluate import Choice, MCItem, multiple_choice_accuracy
    from curate.train.loop import model_config, train
    from curate.train.model import GPT

    cfg = tiny_train_config(corpus, tmp_path / "run", max_steps=60, warmup_steps=5).replace(
        data={"heldout_shards": str(corpus["heldout"])}, eval={"every": 30, "heldout_batches": 4},
        log={"every": 10})
    result = train(cfg)
    losses = [result.losses[s] for s in sorted(result.losses)]
    assert losses[0] > math.log(512) - 0.5
    assert np.mean(losses[-10:]) < losses[0] - 0.8
    heldout = [e["heldout_loss"] for e in result.evals]
    assert len(heldout) == 2 and heldout[-1] < math.log(512) - 0.7
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in log if r["event"] == "train"]
    assert [r["step"] for r in train_rows] == [10, 20, 30, 40, 50, 60]
    assert all(r["tokens_per_s"] > 0 and 0 <= r["data_wait"] < 1 for r in train_rows)
    # the trained model prefers English to noise of the same length when scored by log-likelihood
    model = GPT(model_config(cfg, 512))
    load_model(model, str(tmp_path / "run" / "checkpoints" / "step-00000060" / "model.safetensors"))
    items = [MCItem((Choice("The history of the", " city is"), Choice("The history of the", " qzx vkj")), 0),
             MCItem((Choice("He was born in", " xq zzkw"), Choice("He was born in", " the year")), 1)]
    tok = load_tokenizer(corpus["shards"])
    scores = multiple_choice_accuracy(model, tok, items, eos_id=0, context=32)
    assert scores["acc"] == 1.0 and scores["n"] == 2


def test_resume_continues_with_exactly_the_next_batch(corpus, tmp_path):
    from curate.train.loop import train

    full = train(tiny_train_config(corpus, tmp_path / "full").replace(checkpoint={"every": 3}), record_contexts=True)
    cfg = tiny_train_config(corpus, tmp_path / "killed").replace(checkpoint={"every": 3})
    first = train(cfg, stop_after=5, record_contexts=True)  # dies after step 5; last checkpoint at 3
    assert first.step == 5
    (tmp_path / "killed" / "checkpoints" / ".tmp-step-00000006").mkdir()  # a half-written checkpoint
    resumed = train(cfg, record_contexts=True)
    assert sorted(resumed.losses) == list(range(3, 8))
    assert all(resumed.losses[s] == full.losses[s] for s in range(3, 8))  # bitwise, not approx
    assert resumed.contexts == full.contexts[3 * 2:]
    final = "checkpoints/step-00000008/model.safetensors"
    assert (tmp_path / "full" / final).read_bytes() == (tmp_path / "killed" / final).read_bytes()


def test_changed_data_or_layout_is_refused(corpus, tmp_path):
    from curate.train.loop import train

    cfg = tiny_train_config(corpus, tmp_path / "run", max_steps=2).replace(checkpoint={"every": 1})
    train(cfg)
    with pytest.raises(CurateError, match="token shards changed"):
        train(cfg.replace(optim={"max_steps": 4}, data={"shards": str(corpus["other"])}))
    with pytest.raises(CurateError, match="global batch size changed"):
        train(cfg.replace(optim={"max_steps": 4}, batch={"grad_accum": 1}))
    meta_path = tmp_path / "run" / "checkpoints" / "step-00000002" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "world": 2}))
    with pytest.raises(CurateError, match="world size changed"):
        train(cfg.replace(optim={"max_steps": 4}))
    assert train(cfg.replace(optim={"max_steps": 4}), resume=False).step == 4


DDP_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from curate.train.config import load_config
    from curate.train.loop import train
    result = train(load_config(sys.argv[1]), record_contexts=True)
    with open(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump({"contexts": result.contexts, "losses": result.losses}, fh)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_see_disjoint_data_covering_the_epoch(corpus, tmp_path):
    stream = ContextStream(TokenShards(corpus["small"]), 32, seed=0)
    global_batch = 2 * 4 * 2
    steps = stream.count // global_batch
    config = tmp_path / "train.yaml"
    config.write_text(textwrap.dedent(f"""
        out: run
        device: cpu
        cpu_threads: 1
        model: {{n_layer: 1, n_head: 2, d_model: 32, context: 32}}
        optim: {{lr: 0.01, min_lr: 0.001, warmup_steps: 1, max_steps: {steps}}}
        batch: {{micro_batch: 4, grad_accum: 2}}
        data: {{shards: {corpus['small']}, prefetch: 0}}
        log: {{every: 5, progress: false}}
    """))
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(tmp_path / "ddp.py"), str(config), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    seen = [set(c for batch in r["contexts"] for c in batch) for r in ranks]
    assert not seen[0] & seen[1]
    covered = seen[0] | seen[1]
    assert len(covered) == steps * global_batch
    assert stream.count - len(covered) < global_batch  # the whole epoch but the last partial step
    assert ranks[0]["losses"] != ranks[1]["losses"]  # different data on each rank
    ckpt = tmp_path / "run" / "checkpoints" / f"step-{steps:08d}"
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["world"] == 2 and meta["global_batch"] == global_batch
    assert {p.name for p in ckpt.iterdir()} >= {"rng-rank0.pt", "rng-rank1.pt", "model.safetensors", "optim.pt"}


def test_example_train_config_parses():
    cfg = load_config(REPO / "pipelines" / "train_example.yaml")
    assert cfg.model.context > 0 and Path(cfg.data.shards).is_absolute()
    with pytest.raises(CurateError, match="unknown key"):
        from curate.train.config import from_dict

        from_dict(TrainConfig, {"model": {"layers": 2}})


def test_sigkilled_run_resumes_to_the_same_losses(corpus, tmp_path):
    """A real `kill -9` while training: the rerun continues from the last complete checkpoint and
    every step's loss equals an uninterrupted run's."""
    import signal
    import time

    from curate.train.loop import train

    config = tmp_path / "train.yaml"
    config.write_text(textwrap.dedent(f"""
        out: killed
        device: cpu
        cpu_threads: 1
        model: {{n_layer: 2, n_head: 2, d_model: 32, context: 32}}
        optim: {{lr: 0.01, min_lr: 0.001, warmup_steps: 2, max_steps: 60}}
        batch: {{micro_batch: 4}}
        data: {{shards: {corpus['shards']}}}
        checkpoint: {{every: 2, keep: 1}}
        log: {{every: 1, progress: false}}
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = "import sys; from curate.commands.train import command; command(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", script, str(config)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 240
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    log = tmp_path / "killed" / "log.jsonl"
    killed_at = max((json.loads(line)["step"] for line in log.read_text().splitlines()), default=0)
    resumed = subprocess.run([sys.executable, "-c", script, str(config)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    last_loss = {}
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if row["event"] == "train":
            last_loss[row["step"]] = row["loss"]  # later (resumed) records win
    reference = train(load_config(config).replace(out=str(tmp_path / "reference")))
    assert killed_at >= 2 and sorted(last_loss) == list(range(1, 61))
    assert all(last_loss[s + 1] == reference.losses[s] for s in range(60))
