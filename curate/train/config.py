"""Training configuration: nested frozen dataclasses whose fields are the YAML keys."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curate.core import CurateError


@dataclass(frozen=True)
class ModelConfig:
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    context: int = 1024
    dropout: float = 0.0
    vocab_size: int | None = None  # default: the tokenizer's, rounded up to a multiple of 64


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 100
    max_steps: int = 1000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0


@dataclass(frozen=True)
class BatchConfig:
    micro_batch: int = 8  # contexts per rank per forward pass
    grad_accum: int = 1


@dataclass(frozen=True)
class DataConfig:
    shards: str = ""
    heldout_shards: str | None = None  # a separate shard dir for held-out loss
    heldout_contexts: int = 0  # else: reserve the last N contexts of the stream
    prefetch: int = 2  # batches loaded ahead by a background thread (0: inline)


@dataclass(frozen=True)
class EvalConfig:
    every: int = 0  # steps; 0 = only at the end
    heldout_batches: int = 16
    benchmarks: tuple[str, ...] = ()
    max_examples: int = 500


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 0  # steps; 0 = only at the end
    keep: int = 2


@dataclass(frozen=True)
class LogConfig:
    every: int = 10
    peak_flops: float | None = None  # per device; detected for known GPUs when None
    tensorboard: bool = True
    progress: bool = True


@dataclass(frozen=True)
class TrainConfig:
    out: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    compile: str = "auto"  # auto (on CUDA) | true | false
    cpu_threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self, *sections: str) -> str:
        """A stable hash of the named sections (all when none)."""
        d = self.to_dict()
        d = {k: d[k] for k in sections} if sections else d
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **sections: Any) -> "TrainConfig":
        """A copy with fields of sections overridden: ``cfg.replace(optim={"max_steps": 5})``."""
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            changes[name] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
        return dataclasses.replace(self, **changes)


def from_dict(cls: type, raw: dict | None, where: str = "train config") -> Any:
    """Build a (nested) config dataclass from a mapping; unknown keys fail listing the valid ones."""
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise CurateError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        default = fields[name].default_factory() if fields[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            kwargs[name] = from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def load_config(path: str | Path) -> TrainConfig:
    """Read a training YAML; relative paths resolve against the YAML's directory. Paths in it
    (``out``, ``data.shards``, benchmarks) may be URIs (``s3://…``), which stay as they are."""
    path = Path(path)
    if not path.is_file():
        raise CurateError(f"train config not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    cfg = from_dict(TrainConfig, raw)
    return resolve_paths(cfg, path.resolve().parent)


def resolve_paths(cfg: TrainConfig, base: Path) -> TrainConfig:
    def res(p: str | None) -> str | None:
        if not p or ("://" in str(p) and not str(p).startswith("file://")):
            return p
        q = Path(str(p).removeprefix("file://")).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())

    return cfg.replace(out=res(cfg.out),
                       data={"shards": res(cfg.data.shards), "heldout_shards": res(cfg.data.heldout_shards)},
                       eval={"benchmarks": tuple(res(b) for b in cfg.eval.benchmarks)})


def validate(cfg: TrainConfig) -> None:
    m, o, b = cfg.model, cfg.optim, cfg.batch
    if not cfg.data.shards:
        raise CurateError("train config: data.shards is required (a `curate tokenize` output directory)")
    if m.d_model % m.n_head:
        raise CurateError(f"model.d_model ({m.d_model}) must be divisible by model.n_head ({m.n_head})")
    if min(m.n_layer, m.n_head, m.context, b.micro_batch, b.grad_accum, o.max_steps) < 1:
        raise CurateError("model sizes, batch sizes and optim.max_steps must be >= 1")
    if o.warmup_steps > o.max_steps:
        raise CurateError("optim.warmup_steps must not exceed optim.max_steps")
    if cfg.compile not in ("auto", "true", "false", True, False):
        raise CurateError("compile must be auto, true or false")
