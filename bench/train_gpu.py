"""Training throughput of `curate train`: tokens/s, MFU and data-wait share.

Runs the real loop (curate.train.loop.train) on synthetic token shards (uniform random ids,
memory-mapped like real shards) for each model preset and reports the steady-state numbers
from the run's own JSONL log, skipping the first logging window (compile/warm-up).

    .venv/bin/python bench/train_gpu.py                         # GPU: 124m and 350m at context 2048
    .venv/bin/python bench/train_gpu.py --preset cpu-tiny --device cpu --context 256 --vocab 8192 \
        --micro-batch 4 --steps 20 --log-every 5

Goal on an H100/H200-class GPU: MFU >= 40% at 350M with data wait < 2% of step time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {
    "124m": {"n_layer": 12, "n_head": 12, "d_model": 768},
    "350m": {"n_layer": 24, "n_head": 16, "d_model": 1024},
    "cpu-tiny": {"n_layer": 4, "n_head": 4, "d_model": 256},
}
GPT2_VOCAB = 50304  # GPT-2's 50257 rounded up to a multiple of 64


def synthetic_shards(root: Path, tokens: int, vocab: int, seed: int = 0) -> Path:
    """Random token ids in the `curate tokenize` layout (one shard, offsets, manifest)."""
    from curate.integrity import sha256_file
    from curate.train.shards import MANIFEST, fingerprint

    root.mkdir(parents=True, exist_ok=True)
    ids = np.random.default_rng(seed).integers(1, vocab, size=tokens, dtype=np.uint16)
    ids.tofile(root / "shard-00000.bin")
    np.save(root / "shard-00000.idx.npy", np.array([0, tokens], dtype=np.int64))
    manifest = {"kind": "token_shards", "source": "synthetic", "dtype": "uint16",
                "tokenizer": {"file": None, "sha256": "synthetic", "vocab_size": vocab, "eos_id": 0},
                "tokens": tokens, "documents": 1,
                "shards": [{"file": "shard-00000.bin", "offsets": "shard-00000.idx.npy", "tokens": tokens,
                            "documents": 1, "sha256": sha256_file(root / "shard-00000.bin")}]}
    manifest["fingerprint"] = fingerprint(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return root


def bench_one(preset: str, args, work: Path) -> dict:
    from curate.train.config import TrainConfig
    from curate.train.loop import train

    global_batch = args.micro_batch * args.grad_accum
    tokens = (args.steps + 1) * global_batch * args.context + args.context + 1
    shards = synthetic_shards(work / f"shards-{preset}", tokens, args.vocab)
    cfg = TrainConfig(out=str(work / f"run-{preset}"), device=args.device, compile=args.compile,
                      cpu_threads=args.cpu_threads).replace(
        model={**PRESETS[preset], "context": args.context, "vocab_size": args.vocab},
        optim={"max_steps": args.steps, "warmup_steps": min(10, args.steps)},
        batch={"micro_batch": args.micro_batch, "grad_accum": args.grad_accum},
        data={"shards": str(shards), "prefetch": 2},
        checkpoint={"every": 0, "keep": 1}, eval={"every": 0, "heldout_batches": 0},
        log={"every": args.log_every, "peak_flops": args.peak_flops, "progress": False, "tensorboard": False})
    t0 = time.perf_counter()
    result = train(cfg, resume=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (Path(cfg.out) / "log.jsonl").read_text().splitlines()]
    steady = [r for r in rows if r["event"] == "train"][1:] or [r for r in rows if r["event"] == "train"]
    mfu = [r["mfu"] for r in steady if r["mfu"] is not None]
    return {"preset": preset, "params_M": round(result.n_params / 1e6, 1), "context": args.context,
            "vocab": args.vocab,
            "micro_batch": args.micro_batch, "grad_accum": args.grad_accum, "steps": args.steps,
            "device": device_name(args.device),
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in steady)),
            "mfu": round(statistics.median(mfu), 4) if mfu else None,
            "data_wait": round(statistics.median(r["data_wait"] for r in steady), 4),
            "final_loss": round(steady[-1]["loss"], 3), "wall_s": round(wall, 1)}


def bare_torch(preset: str, args) -> dict:
    """The floor to compare with: the same model and optimizer step on in-memory random batches,
    no loader, no logging, no checkpoints (what a hand-written nanoGPT-style loop does)."""
    import torch

    from curate.train.config import ModelConfig
    from curate.train.model import GPT

    cuda = args.device != "cpu" and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if args.cpu_threads and not cuda:
        torch.set_num_threads(args.cpu_threads)
    torch.manual_seed(0)
    model = GPT(ModelConfig(**PRESETS[preset], context=args.context, vocab_size=args.vocab)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True if cuda else None)
    net = torch.compile(model) if cuda and args.compile != "false" else model
    x = torch.randint(0, args.vocab, (args.micro_batch, args.context + 1), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def step():
        for _ in range(args.grad_accum):
            with autocast:
                loss = net(x[:, :-1], x[:, 1:]) / args.grad_accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    warm = min(args.log_every, args.steps // 2)
    for _ in range(warm):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps - warm):
        step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    return {"preset": preset, "tokens_per_s": round((args.steps - warm) * args.micro_batch * args.grad_accum
                                                    * args.context / elapsed)}


def device_name(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", action="append", choices=sorted(PRESETS), help="repeatable; default 124m and 350m")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", default="auto")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=GPT2_VOCAB)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--peak-flops", type=float, default=None, help="per device; detected for known GPUs")
    p.add_argument("--cpu-threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--no-baseline", action="store_true", help="skip the bare-torch loop comparison")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="curate-train-bench-") as tmp:
        for preset in args.preset or ["124m", "350m"]:
            results.append(bench_one(preset, args, Path(tmp)))
            if not args.no_baseline:
                results[-1]["bare_torch_tokens_per_s"] = bare_torch(preset, args)["tokens_per_s"]
            print(json.dumps(results[-1]), flush=True)
    print("\n| preset | params (M) | context | batch | device | curate tokens/s | bare torch tokens/s | ratio "
          "| MFU | data wait |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        bare = r.get("bare_torch_tokens_per_s")
        ratio = f"{r['tokens_per_s'] / bare:.2f}" if bare else "n/a"
        print(f"| {r['preset']} | {r['params_M']} | {r['context']} | {r['micro_batch']}x{r['grad_accum']} | "
              f"{r['device']} | {r['tokens_per_s']:,} | {f'{bare:,}' if bare else 'n/a'} | {ratio} | {mfu} | "
              f"{100 * r['data_wait']:.2f}% |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
