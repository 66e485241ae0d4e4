"""The pretraining loop: AdamW + warm-up/cosine, clipping, accumulation, DDP, checkpoints.

One code path for 1 or N processes: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group
is gloo on CPU and NCCL on GPU and each rank reads a disjoint slice of every step's contexts
(:class:`curate.train.data.Layout`). On CUDA: bf16 autocast, fused AdamW, ``torch.compile``
and Flash attention through ``scaled_dot_product_attention``.

Checkpoints (``<out>/checkpoints/step-NNNNNNNN/``) are written to a temporary directory and
renamed: ``model.safetensors``, ``optim.pt`` (tensors and plain containers only, loaded with
``torch.load(weights_only=True)``; both with sha256 sidecars checked before loading),
``rng-rank<R>.pt`` and ``meta.json`` (step = data
position, world size, batch layout, the token-shard fingerprint). Resuming continues with
exactly the next batch and refuses when the shards or the batch layout changed.

``out`` and ``data.shards`` may be URIs (``s3://…``). A remote checkpoint is saved locally,
uploaded under ``step-NNNNNNNN/_attempts/<attempt>/`` (each rank its own RNG file), committed by
``meta.json`` (naming that prefix, written last) and then pointed to by ``latest``; resuming
fetches its files into the local cache and checks the sidecars before loading. Logs are written
locally and uploaded after every checkpoint and at the end.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from curate.core import CurateError
from curate.integrity import atomic_dir, temp_sibling, verify_file, write_sidecar, write_text_atomic
from curate.io import fs
from curate.train import store
from curate.train.config import ModelConfig, TrainConfig, validate

# bf16 dense peak FLOP/s per GPU, matched against torch.cuda.get_device_name()
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12,
              "A10G": 125e12, "L4": 121e12, "RTX 4090": 165e12, "V100": 125e12}
CHECKED_FILES = ("model.safetensors", "optim.pt")  # checkpoint files with sha256 sidecars


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr`` at ``max_steps`` (Loshchilov & Hutter 2017)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def detect_peak_flops(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> tuple[Dist, str]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; pick the device."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise CurateError("device: cuda requested but torch sees no GPU; use device: cpu")
    device = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        owns = True
    return Dist(rank, world, local, owns), device


def barrier(d: Dist) -> None:
    import torch.distributed as dist

    if d.world > 1:
        dist.barrier()


def mean_across(d: Dist, value):
    import torch.distributed as dist

    if d.world > 1:
        dist.all_reduce(value, op=dist.ReduceOp.AVG if value.is_cuda else dist.ReduceOp.SUM)
        if not value.is_cuda:
            value /= d.world
    return value


# --------------------------------------------------------------------------- checkpoints


def checkpoint_root(cfg: TrainConfig) -> Path | str:
    """``<out>/checkpoints``: a Path locally, a URI string on an object store."""
    return fs.join(cfg.out, "checkpoints") if fs.is_remote(cfg.out) else Path(cfg.out) / "checkpoints"


def latest_checkpoint(root: Path | str) -> Path | str | None:
    """The checkpoint named by ``latest``; temporary (half-written) directories are never used."""
    if fs.is_remote(root):
        try:
            name = fs.read_text(fs.join(root, "latest")).strip()
        except FileNotFoundError:
            return None
        path = fs.join(root, name)
        return path if fs.exists(fs.join(path, "meta.json")) else None
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    return path if (path / "meta.json").is_file() else None


def read_meta(path: Path | str) -> dict:
    """A checkpoint's ``meta.json`` (local or remote)."""
    meta = store.read_json(fs.join(path, "meta.json"))
    if meta is None:
        raise CurateError(f"{path} is not a complete checkpoint (meta.json missing)")
    return meta


def _rng_state(device: str) -> dict:
    import torch

    state = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def save_checkpoint(root: Path | str, step: int, model, opt, meta: dict, d: Dist, device: str,
                    keep: int) -> Path | str:
    """Write ``step-NNNNNNNN`` atomically (temp dir, rename, then the ``latest`` pointer; on an
    object store: attempt prefix, ``meta.json`` last, then ``latest``).

    ``model.safetensors`` and ``optim.pt`` get sha256 sidecars, checked again on resume.
    """
    import torch
    from safetensors.torch import save_model

    name = f"step-{step:08d}"
    if fs.is_remote(root):
        return _save_remote(root, name, model, opt, meta, d, device, keep)
    root = Path(root)
    final = root / name
    with _checkpoint_dir(final, d) as tmp:
        barrier(d)  # rank 0 has created the directory
        torch.save(_rng_state(device), tmp / f"rng-rank{d.rank}.pt")
        barrier(d)
        if d.main:
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(opt.state_dict(), tmp / "optim.pt")
            for file in CHECKED_FILES:
                write_sidecar(tmp / file)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    if d.main:
        write_text_atomic(root / "latest", name + "\n")
        for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier(d)
    return final


def _save_remote(root: str, name: str, model, opt, meta: dict, d: Dist, device: str, keep: int) -> str:
    """The object-store path of :func:`save_checkpoint`: every file under this save's attempt
    prefix, then ``meta.json`` (the commit record, naming the prefix), then ``latest``."""
    import torch
    from safetensors.torch import save_model

    attempt = _shared_attempt(d)
    final = fs.join(root, name)
    prefix = fs.join(final, store.attempt_root(attempt))
    with tempfile.TemporaryDirectory(prefix="curate-ckpt-") as tmp_name:
        tmp = Path(tmp_name)
        rng = tmp / f"rng-rank{d.rank}.pt"
        torch.save(_rng_state(device), rng)
        fs.put_file(rng, fs.join(prefix, rng.name))
        barrier(d)  # every rank's RNG state is uploaded
        if d.main:
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(opt.state_dict(), tmp / "optim.pt")
            for file in CHECKED_FILES:
                write_sidecar(tmp / file)
                for part in (file, file + ".sha256"):
                    fs.put_file(tmp / part, fs.join(prefix, part))
            record = {**meta, "root": store.attempt_root(attempt)}
            fs.write_text(fs.join(final, "meta.json"), json.dumps(record, indent=2, sort_keys=True))
            fs.write_text(fs.join(root, "latest"), name + "\n")
            store.collect(final, keep=attempt)
            steps = sorted(n for n in fs.listdir(root) if n.startswith("step-"))
            for old in steps[:-keep] if keep > 0 else []:
                fs.remove(fs.join(root, old), recursive=True)
    barrier(d)
    return final


def _shared_attempt(d: Dist) -> str:
    """A fresh attempt id, the same on every rank (rank 0's, broadcast)."""
    attempt = [store.new_attempt() if d.main else None]
    if d.world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(attempt, src=0)
    return attempt[0]


def _checkpoint_file(path: Path | str, meta: dict, name: str) -> Path:
    """A checkpoint file as a local path (remote ones fetched, with their sidecar, into the cache)."""
    if not fs.is_remote(path):
        return Path(path) / name
    return store.fetch(fs.join(store.base(path, meta), name))


def _checkpoint_dir(final: Path, d: Dist):
    """The temporary checkpoint directory: created and renamed into place by rank 0, shared by all ranks."""
    return atomic_dir(final, tag="ckpt") if d.main else nullcontext(temp_sibling(final, "ckpt"))


def check_resumable(meta: dict, expected: dict, path: Path) -> None:
    """Refuse a checkpoint whose data or batch layout differs: resuming would repeat or skip data."""
    checks = [("shards_fingerprint", "the token shards changed"),
              ("world", "the world size changed"),
              ("global_batch", "the global batch size changed"),
              ("model", "the model configuration changed")]
    for key, why in checks:
        if meta.get(key) != expected[key]:
            raise CurateError(f"cannot resume from {path}: {why} ({meta.get(key)} -> {expected[key]}), "
                              "which would repeat or skip data; train into a new `out` or pass --no-resume")


def load_checkpoint(path: Path | str, model, opt, d: Dist, device: str) -> int:
    """Restore model, optimizer and this rank's RNG; return the step to continue from."""
    import torch
    from safetensors.torch import load_model

    meta = read_meta(path)
    files = {f: _checkpoint_file(path, meta, f) for f in (*CHECKED_FILES, f"rng-rank{d.rank}.pt")}
    for file in CHECKED_FILES:
        verify_file(files[file], what="checkpoint file")
    load_model(model, str(files["model.safetensors"]), device=str(device))
    opt.load_state_dict(torch.load(files["optim.pt"], map_location=device, weights_only=True))
    rng = torch.load(files[f"rng-rank{d.rank}.pt"], weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device.startswith("cuda"):
        torch.cuda.set_rng_state(rng["cuda"], device)
    return int(meta["step"])


# --------------------------------------------------------------------------- logging


class Logger:
    """JSONL always (rank 0), TensorBoard when installed, a tqdm bar when asked.

    With a remote ``out`` both are written in a local directory (the existing ``log.jsonl``
    fetched first, so a resumed run appends) and uploaded by :meth:`sync`."""

    def __init__(self, cfg: TrainConfig, d: Dist, start: int):
        self.enabled = d.main
        self.out = cfg.out
        self.remote = fs.is_remote(cfg.out)
        self.local = Path(tempfile.mkdtemp(prefix="curate-train-log-")) if self.remote and self.enabled \
            else Path(cfg.out)
        self.path = self.local / "log.jsonl"
        self.tb = self.bar = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.remote and fs.exists(fs.join(cfg.out, "log.jsonl")):
            self.path.write_bytes(fs.read_bytes(fs.join(cfg.out, "log.jsonl")))
        if cfg.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.local / "tensorboard"))
            except ImportError:
                self.tb = None
        if cfg.log.progress:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=cfg.optim.max_steps, initial=start, unit="step", dynamic_ncols=True)
            except ImportError:
                self.bar = None

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "event"):
                    self.tb.add_scalar(f"{record['event']}/{k}", v, record["step"])
        if self.bar is not None and record["event"] == "train":
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def sync(self) -> None:
        """Upload the log (and TensorBoard events) when ``out`` is remote (rank 0)."""
        if not (self.enabled and self.remote):
            return
        if self.tb is not None:
            self.tb.flush()
        if self.path.is_file():
            fs.put_file(self.path, fs.join(self.out, "log.jsonl"))
        if (self.local / "tensorboard").is_dir():
            fs.put_tree(self.local / "tensorboard", fs.join(self.out, "tensorboard"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        self.sync()
        if self.remote and self.enabled:
            shutil.rmtree(self.local, ignore_errors=True)


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    losses: dict[int, float]  # step -> this rank's mean micro-batch loss
    step: int  # steps completed
    evals: list[dict]
    contexts: list[list[int]]  # context indices this rank trained on, per step (when recorded)
    n_params: int


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    v = cfg.model.vocab_size or ((vocab_size + 63) // 64) * 64
    if v < vocab_size:
        raise CurateError(f"model.vocab_size {v} is smaller than the tokenizer's {vocab_size}")
    return ModelConfig(**{**asdict(cfg.model), "vocab_size": v})


def build_streams(cfg: TrainConfig, context: int):
    """The training stream and the held-out stream (separate shards, or the last contexts)."""
    from curate.train.data import ContextStream
    from curate.train.shards import TokenShards

    shards = TokenShards(cfg.data.shards)
    held = cfg.data.heldout_contexts
    if cfg.data.heldout_shards:
        hs = TokenShards(cfg.data.heldout_shards)
        if hs.manifest["tokenizer"]["sha256"] != shards.manifest["tokenizer"]["sha256"]:
            raise CurateError("data.heldout_shards was tokenized with a different tokenizer than data.shards")
        return shards, ContextStream(shards, context, seed=cfg.seed), ContextStream(hs, context)
    total = (len(shards) - 1) // context
    if held >= total:
        raise CurateError(f"data.heldout_contexts ({held}) leaves no training contexts (stream has {total})")
    train = ContextStream(shards, context, count=total - held, seed=cfg.seed)
    heldout = ContextStream(shards, context, first=total - held, count=held) if held else None
    return shards, train, heldout


def train(cfg: TrainConfig, *, resume: bool = True, stop_after: int | None = None,
          record_contexts: bool = False) -> TrainResult:
    """Run (or resume) training; ``stop_after`` ends the process after that step as a kill would."""
    validate(cfg)
    d, device = setup_distributed(cfg.device)
    try:
        return _train(cfg, d, device, resume, stop_after, record_contexts)
    finally:
        if d.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


@dataclass
class Run:
    """What one training run holds, built by :func:`setup_run`."""

    cfg: TrainConfig
    d: Dist
    device: str
    mcfg: ModelConfig
    layout: object  # curate.train.data.Layout
    shards: object  # curate.train.shards.TokenShards
    stream: object
    heldout: object
    model: object  # the bare model (checkpoints, evaluation)
    net: object  # what the step runs: compiled and/or DDP-wrapped model
    opt: object
    expected: dict  # what a checkpoint must match to be resumed
    start: int

    def meta(self, step: int) -> dict:
        layout = self.layout
        return {**self.expected, "step": step, "samples_seen": step * layout.global_batch,
                "micro_batch": layout.micro_batch, "grad_accum": layout.grad_accum,
                "config": self.cfg.to_dict(), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def setup_run(cfg: TrainConfig, d: Dist, device: str, resume: bool) -> Run:
    """Data streams, model, optimizer, the checkpoint to resume from, compile and DDP."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from curate.train.data import Layout
    from curate.train.model import GPT, param_groups

    cuda = device.startswith("cuda")
    if cfg.cpu_threads and not cuda:
        torch.set_num_threads(cfg.cpu_threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    shards, stream, heldout = build_streams(cfg, cfg.model.context)
    mcfg = model_config(cfg, shards.vocab_size)
    layout = Layout(d.world, cfg.batch.micro_batch, cfg.batch.grad_accum)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = GPT(mcfg).to(device)
    o = cfg.optim
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2),
                            fused=True if cuda else None)
    expected = {"shards_fingerprint": shards.fingerprint, "world": d.world,
                "global_batch": layout.global_batch, "model": asdict(mcfg)}
    start = _resume(cfg, d, device, model, opt, expected) if resume else None
    if start is None:
        start = 0
        torch.manual_seed(cfg.seed + 1 + d.rank)  # per-rank stream for dropout

    net = model
    if cfg.compile in ("true", True) or (cfg.compile == "auto" and cuda):
        net = torch.compile(net)
    if d.world > 1:
        net = DDP(net, device_ids=[d.local_rank] if cuda else None)
    return Run(cfg, d, device, mcfg, layout, shards, stream, heldout, model, net, opt, expected, start)


def _resume(cfg: TrainConfig, d: Dist, device: str, model, opt, expected: dict) -> int | None:
    """Restore the latest checkpoint and return its step (None when there is none)."""
    ckpt = latest_checkpoint(checkpoint_root(cfg))
    if ckpt is None:
        return None
    check_resumable(read_meta(ckpt), expected, ckpt)
    return load_checkpoint(ckpt, model, opt, d, device)


def forward_backward_step(run: Run, x, y, last_micro: bool, autocast):
    """Loss of one micro-batch (scaled for accumulation), back-propagated; gradients are
    all-reduced across ranks on the last micro-batch only. Returns the detached loss."""
    sync = nullcontext() if run.d.world == 1 or last_micro else run.net.no_sync()
    with sync:
        with autocast:
            loss = run.net(x, y) / run.layout.grad_accum
        loss.backward()
    return loss.detach()


def train_step(run: Run, loader, step: int, autocast, contexts: list | None = None):
    """One optimizer step over ``grad_accum`` micro-batches: (summed loss, grad norm or None, lr).
    ``contexts``: append the context indices this rank trains on."""
    import torch

    o, layout = run.cfg.optim, run.layout
    lr = lr_at(step, o)
    for group in run.opt.param_groups:
        group["lr"] = lr
    step_loss = torch.zeros((), device=run.device)
    for micro in range(layout.grad_accum):
        if contexts is not None:
            contexts.append([run.stream.context_index(s) for s in layout.samples(step, micro, run.d.rank)])
        x, y = next(loader)
        step_loss += forward_backward_step(run, x, y, micro == layout.grad_accum - 1, autocast)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), o.grad_clip) if o.grad_clip > 0 else None
    run.opt.step()
    run.opt.zero_grad(set_to_none=True)
    return step_loss, grad_norm, lr


class _Meter:
    """Losses and throughput since the last train log record."""

    def __init__(self, run: Run, loader, start: int):
        from curate.train.model import flops_per_token

        self.run, self.loader = run, loader
        self.fpt = flops_per_token(run.mcfg, run.model.num_params())
        self.peak = run.cfg.log.peak_flops or detect_peak_flops(run.device)
        self.tokens_per_step = run.layout.global_batch * run.mcfg.context
        self.pending: list = []
        self.t_last, self.wait_last, self.step_last = time.perf_counter(), 0.0, start

    def add(self, step: int, loss, grad_norm) -> None:
        self.pending.append((step, loss, grad_norm))

    def record(self, done: int, lr: float, losses: dict[int, float]) -> dict:
        """The ``train`` log record for the steps since the last one; fills ``losses``; resets."""
        import torch

        elapsed = time.perf_counter() - self.t_last
        for s, l, _ in self.pending:
            losses[s] = float(l)
        mean_loss = float(mean_across(self.run.d, torch.stack([l for _, l, _ in self.pending]).mean()))
        tps = self.tokens_per_step * (done - self.step_last) / max(elapsed, 1e-9)
        grad_norm = self.pending[-1][2]
        record = {"event": "train", "step": done, "loss": mean_loss, "lr": lr,
                  "grad_norm": float(grad_norm) if grad_norm is not None else None,
                  "tokens_per_s": tps, "mfu": tps * self.fpt / (self.peak * self.run.d.world) if self.peak else None,
                  "data_wait": (self.loader.wait_seconds - self.wait_last) / max(elapsed, 1e-9),
                  "elapsed_s": elapsed}
        self.pending, self.t_last = [], time.perf_counter()
        self.wait_last, self.step_last = self.loader.wait_seconds, done
        return record


def _train(cfg: TrainConfig, d: Dist, device: str, resume: bool, stop_after: int | None,
           record_contexts: bool) -> TrainResult:
    from curate.train.data import BatchLoader
    from curate.train.evaluate import autocast_for

    run = setup_run(cfg, d, device, resume)
    start, o = run.start, cfg.optim
    loader = BatchLoader(run.stream, run.layout, d.rank, start, device=device, prefetch=cfg.data.prefetch)
    logger = Logger(cfg, d, start)
    meter = _Meter(run, loader, start)
    result = TrainResult({}, start, [], [], run.model.num_params())
    autocast = autocast_for(device)
    try:
        for step in range(start, o.max_steps):
            loss, grad_norm, lr = train_step(run, loader, step, autocast,
                                             result.contexts if record_contexts else None)
            meter.add(step, loss, grad_norm)
            done = step + 1
            logger.advance()
            _after_step(run, done, lr, stop_after, meter, logger, result)
            result.step = done
            if stop_after is not None and done >= stop_after:
                break
    finally:
        loader.close()
        logger.close()
    return result


def _after_step(run: Run, done: int, lr: float, stop_after: int | None, meter: _Meter, logger: Logger,
                result: TrainResult) -> None:
    """Log, evaluate and checkpoint when their intervals (or the last step) come."""
    cfg, last = run.cfg, run.cfg.optim.max_steps
    if done % max(cfg.log.every, 1) == 0 or done == last or done == stop_after:
        logger.log(meter.record(done, lr, result.losses))
    if (cfg.eval.every and done % cfg.eval.every == 0) or done == last:
        record = evaluate_model(cfg, run.model, run.shards, run.heldout, run.mcfg, run.d, run.device, done)
        result.evals.append(record)
        logger.log(record)
    if (cfg.checkpoint.every and done % cfg.checkpoint.every == 0) or done == last:
        save_checkpoint(checkpoint_root(cfg), done, run.model, run.opt, run.meta(done), run.d, run.device,
                        cfg.checkpoint.keep)
        logger.sync()


def evaluate_model(cfg: TrainConfig, model, shards, heldout, mcfg: ModelConfig, d: Dist, device: str,
                   step: int) -> dict:
    """Held-out loss and benchmark accuracy on rank 0 (the others wait)."""
    from curate.integrity import load_tokenizer
    from curate.train.evaluate import benchmark_name, heldout_loss, load_benchmark, multiple_choice_accuracy
    from curate.train.tokenizer import EOS

    record: dict = {"event": "eval", "step": step}
    if d.main:
        if heldout is not None:
            record["heldout_loss"] = heldout_loss(model, heldout, batch_size=cfg.batch.micro_batch,
                                                  max_batches=cfg.eval.heldout_batches, device=device)
        if cfg.eval.benchmarks:
            tok = load_tokenizer(shards.tokenizer_path, required_token=EOS)
            for path in cfg.eval.benchmarks:
                items = load_benchmark(path, cfg.eval.max_examples)
                scores = multiple_choice_accuracy(model, tok, items, eos_id=shards.eos_id,
                                                  context=mcfg.context, device=device)
                name = benchmark_name(path)
                record.update({f"{name}/acc": scores["acc"], f"{name}/acc_norm": scores["acc_norm"]})
        model.train()
    barrier(d)
    return record
