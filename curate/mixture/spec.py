"""The ``curate mixopt`` spec: a pool with a domain column, a token budget per proxy, a target,
the proxy training config and the search settings (RegMix, Liu et al. 2024; Olmix).

```yaml
seed: 0
pool: out/web/04-domain_label      # a stage, a mixture, a directory, glob or file (.parquet/.jsonl)
domain_column: domain
token_budget: 2000000              # training tokens of every proxy (and of the validation runs)
max_epochs: 4                      # repetition cap per domain; per domain: caps: {books: 2}
kl_bound: 0.5                      # optional: KL(proposed || natural) <= 0.5 nats
mixtures: 64                       # proxies, Dirichlet around the natural token distribution
concentration: 1.0                 # Dirichlet alpha = concentration * domains * natural share
target: {documents: [held.jsonl], benchmarks: [arc_easy.jsonl]}
tokenizer: {vocab_size: 8192}      # or {path: tok.json}
train: {model: {...}, optim: {...}, batch: {...}}   # as `curate ablate`
regression: {folds: 5, models: [linear, lightgbm]}
search: {candidates: 100000, top_k: 100}
validate: true                     # train proposed, natural and uniform at the same budget
workers: 1                         # proxies trained in parallel processes (one per GPU on a GPU machine)
```
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from curate.core import CurateError

SPEC_KEYS = {"name", "seed", "pool", "domain_column", "domains", "token_budget", "max_epochs", "caps", "kl_bound",
             "mixtures", "concentration", "target", "tokenizer", "train", "regression", "search", "validate",
             "workers"}
TARGET_KEYS = {"documents", "benchmarks", "max_benchmark_examples"}
REGRESSION_MODELS = ("linear", "lightgbm")


@dataclass(frozen=True)
class MixoptSpec:
    pool: str
    token_budget: int
    target_documents: tuple[str, ...]
    train: dict
    target_benchmarks: tuple[str, ...] = ()
    max_benchmark_examples: int = 500
    domain_column: str = "domain"
    domains: tuple[str, ...] | None = None  # None: every domain of the pool
    max_epochs: float = 4.0
    caps: dict = field(default_factory=dict)  # domain -> max epochs
    kl_bound: float | None = None
    mixtures: int = 16
    concentration: float = 1.0
    tokenizer_path: str | None = None
    vocab_size: int = 8192
    folds: int = 5
    models: tuple[str, ...] = REGRESSION_MODELS
    candidates: int = 100_000
    top_k: int = 100
    validate: bool = True
    workers: int = 1
    seed: int = 0
    name: str = "mixopt"

    def cap(self, domain: str) -> float:
        return float(self.caps.get(domain, self.max_epochs))

    def digest(self) -> str:
        """A hash of everything that decides the proxies' results (not ``workers``)."""
        d = {k: v for k, v in asdict(self).items() if k != "workers"}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_mixopt(path: str | Path) -> MixoptSpec:
    path = Path(path)
    if not path.is_file():
        raise CurateError(f"mixopt spec not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return parse_mixopt(raw, path.resolve().parent)


def parse_mixopt(raw: dict, base: Path = Path(".")) -> MixoptSpec:
    """Validate a mixopt spec (unknown keys and bad values fail in one line, before any work)."""
    if not isinstance(raw, dict):
        raise CurateError("mixopt spec must be a mapping")
    _known("mixopt spec", raw, SPEC_KEYS)
    for key in ("pool", "token_budget", "target"):
        if key not in raw:
            raise CurateError(f"mixopt spec needs '{key}'")
    target = raw["target"] if isinstance(raw["target"], dict) else {"documents": raw["target"]}
    _known("mixopt spec: target", target, TARGET_KEYS)
    documents, benchmarks = _paths(target.get("documents"), base), _paths(target.get("benchmarks"), base)
    if not documents and not benchmarks:
        raise CurateError("mixopt spec: target needs 'documents' (held-out texts) and/or 'benchmarks' (JSONL files)")
    train = dict(raw.get("train") or {})
    if "eval" in train and "benchmarks" in train["eval"]:
        train["eval"] = {**train["eval"], "benchmarks": list(_paths(train["eval"]["benchmarks"], base))}
    for key in ("out", "data"):
        if key in train:
            raise CurateError(f"mixopt spec: train.{key} is set by `curate mixopt` itself; remove it")
    tok, reg, search = raw.get("tokenizer") or {}, raw.get("regression") or {}, raw.get("search") or {}
    _known("mixopt spec: regression", reg, {"folds", "models"})
    _known("mixopt spec: search", search, {"candidates", "top_k"})
    models = tuple(reg.get("models", REGRESSION_MODELS))
    if not models or set(models) - set(REGRESSION_MODELS):
        raise CurateError(f"mixopt spec: regression.models must be a subset of {', '.join(REGRESSION_MODELS)}")
    domains = raw.get("domains")
    spec = MixoptSpec(
        pool=str(_resolve(raw["pool"], base)), token_budget=int(raw["token_budget"]), target_documents=documents,
        target_benchmarks=benchmarks, max_benchmark_examples=int(target.get("max_benchmark_examples", 500)),
        train=train, domain_column=str(raw.get("domain_column", "domain")),
        domains=tuple(str(d) for d in domains) if domains else None, max_epochs=float(raw.get("max_epochs", 4.0)),
        caps={str(k): float(v) for k, v in (raw.get("caps") or {}).items()},
        kl_bound=float(raw["kl_bound"]) if raw.get("kl_bound") is not None else None,
        mixtures=int(raw.get("mixtures", 16)), concentration=float(raw.get("concentration", 1.0)),
        tokenizer_path=str(_resolve(tok["path"], base)) if tok.get("path") else None,
        vocab_size=int(tok.get("vocab_size", 8192)), folds=int(reg.get("folds", 5)), models=models,
        candidates=int(search.get("candidates", 100_000)), top_k=int(search.get("top_k", 100)),
        validate=bool(raw.get("validate", True)), workers=int(raw.get("workers", 1)), seed=int(raw.get("seed", 0)),
        name=str(raw.get("name", "mixopt")))
    _check_values(spec)
    return spec


def _check_values(s: MixoptSpec) -> None:
    if s.token_budget < 1 or s.mixtures < 3:
        raise CurateError("mixopt spec: token_budget must be >= 1 and mixtures >= 3 (a regression needs proxies)")
    if min([s.max_epochs, *s.caps.values()]) <= 0:
        raise CurateError("mixopt spec: max_epochs and caps must be > 0")
    if s.kl_bound is not None and s.kl_bound < 0:
        raise CurateError(f"mixopt spec: kl_bound must be >= 0, got {s.kl_bound}")
    if s.concentration <= 0 or s.folds < 2 or s.candidates < 1 or s.top_k < 1 or s.workers < 1:
        raise CurateError("mixopt spec: concentration must be > 0, regression.folds >= 2, "
                          "search.candidates/top_k and workers >= 1")


def _known(what: str, raw: dict, valid: set[str]) -> None:
    if not isinstance(raw, dict):
        raise CurateError(f"{what} must be a mapping")
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise CurateError(f"{what}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")


def _resolve(p, base: Path) -> Path | str:
    if "://" in str(p) and not str(p).startswith("file://"):
        return str(p)
    q = Path(str(p).removeprefix("file://")).expanduser()
    return q if q.is_absolute() else (base / q).resolve()


def _paths(value, base: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(_resolve(v, base)) for v in ([value] if isinstance(value, str) else value))
