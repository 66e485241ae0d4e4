"""The training loop on CUDA (bf16 autocast, fused AdamW, torch.compile, SDPA): skipped without a GPU.

Run on a GPU machine with ``pytest -m gpu tests/train/test_train_gpu.py``; the CPU suite covers the
same loop on gloo/CPU in test_train.py.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import tiny_train_config

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def on_cuda(corpus: dict, out, **changes):
    return tiny_train_config(corpus, out, **changes.pop("optim", {})).replace(device="cuda", **changes)


def test_loss_falls_on_cuda_with_compile_and_reports_mfu(corpus, tmp_path):
    from curate.train.loop import train

    cfg = on_cuda(corpus, tmp_path / "run", optim={"max_steps": 60, "warmup_steps": 5},
                  compile="true", log={"every": 10},
                  data={"heldout_shards": str(corpus["heldout"])}, eval={"every": 60, "heldout_batches": 4})
    result = train(cfg)
    losses = [result.losses[s] for s in sorted(result.losses)]
    assert losses[0] > math.log(512) - 0.5
    assert np.mean(losses[-10:]) < losses[0] - 0.8
    assert result.evals[-1]["heldout_loss"] < math.log(512) - 0.7
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["event"] == "train"]
    name = torch.cuda.get_device_name(0)
    if any(k in name for k in ("H100", "H200", "A100")):  # peak FLOPs detected from the device name
        assert all(r["mfu"] is not None and 0 < r["mfu"] < 1 for r in train_rows)


def test_resume_on_cuda_continues_with_the_same_losses(corpus, tmp_path):
    from curate.train.loop import train

    full = train(on_cuda(corpus, tmp_path / "full", compile="false", checkpoint={"every": 3}),
                 record_contexts=True)
    cfg = on_cuda(corpus, tmp_path / "killed", compile="false", checkpoint={"every": 3})
    first = train(cfg, stop_after=5, record_contexts=True)
    assert first.step == 5
    resumed = train(cfg, record_contexts=True)
    assert sorted(resumed.losses) == list(range(3, 8))
    assert resumed.contexts == full.contexts[3 * 2:]
    for step in range(3, 8):
        assert resumed.losses[step] == pytest.approx(full.losses[step], rel=1e-6, abs=1e-6)
