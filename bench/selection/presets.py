"""Presets: pool size, selectors, token budget, proxy model and seeds of one benchmark run."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

ALL_SELECTORS = ("random", "heuristics", "fasttext", "dsir", "betr", "perplexity_correlation", "preselect")
ZOO_SELECTORS = ("perplexity_correlation", "preselect")
TARGET_BENCHMARKS = ("arc_easy", "arc_challenge", "openbook_qa", "piqa")


@dataclass(frozen=True)
class Preset:
    name: str
    page: str | None                       # results page under docs/ (None: results only in the output dir)
    chunk_chars: int = 1500                # long documents are cut at line breaks into pieces of about this size
    pieces_per_corpus: int = 300           # cap per corpus file, chosen by seeded hash (all corpora mixed)
    pool_heldout_fraction: float = 0.05    # pool pieces kept out of selection for held-out pool loss
    benchmarks: tuple[str, ...] = TARGET_BENCHMARKS
    items_per_benchmark: int | None = None  # cap on target items read per benchmark (None: all)
    visible_fraction: float = 0.5          # target items selectors may see; the rest is held out
    eval_items: int = 100                  # held-out items per benchmark for accuracy
    selectors: tuple[str, ...] = ALL_SELECTORS
    keep_fraction: float = 0.1             # share of the pool's tokens every selector keeps
    token_budget: int = 60_000             # training tokens per selection (equal for all)
    vocab_size: int = 2048
    seeds: tuple[int, ...] = (0, 1, 2)
    model: dict = field(default_factory=lambda: {"n_layer": 2, "n_head": 2, "d_model": 64, "context": 128})
    micro_batch: int = 8
    lr: float = 3e-3
    device: str = "cpu"
    cpu_threads: int | None = 1
    spark_master: str = "local[2]"
    fasttext_negatives: int = 2000         # random pool pieces as negatives of the target classifier
    betr_sample: int = 600                 # pool pieces embedded and ranked by BETR
    betr_examples: int = 100               # visible target examples per benchmark for BETR
    zoo_subsets: int = 8                   # data subsets of the model zoo (each trained at every zoo budget)
    zoo_budgets: tuple[int, ...] = (15_000, 45_000)
    zoo_model: dict = field(default_factory=lambda: {"n_layer": 1, "n_head": 2, "d_model": 48, "context": 128})
    zoo_sample: int = 250                  # pool pieces in the bits-per-byte matrix
    zoo_eval_items: int = 80               # visible target items per benchmark for the zoo's error

    @property
    def zoo_size(self) -> int:
        return self.zoo_subsets * len(self.zoo_budgets)

    def needs_zoo(self) -> bool:
        return any(s in ZOO_SELECTORS for s in self.selectors)


DEFAULT = Preset(name="default", page="selection_benchmark.md")

SMOKE = replace(
    DEFAULT, name="smoke", page=None, chunk_chars=1200, pieces_per_corpus=30, benchmarks=("arc_easy", "piqa"),
    items_per_benchmark=120, eval_items=20, cpu_threads=1, selectors=("random", "dsir"), keep_fraction=0.3,
    token_budget=6_000,
    vocab_size=400, seeds=(0, 1), model={"n_layer": 1, "n_head": 2, "d_model": 32, "context": 64},
    fasttext_negatives=100, betr_sample=100, betr_examples=20, zoo_subsets=2, zoo_budgets=(3_000, 6_000),
    zoo_model={"n_layer": 1, "n_head": 2, "d_model": 32, "context": 64}, zoo_sample=40, zoo_eval_items=20)

GPU = replace(
    DEFAULT, name="gpu", page="selection_benchmark_gpu.md", chunk_chars=2000, pieces_per_corpus=20_000,
    eval_items=1000, keep_fraction=0.2, token_budget=2_000_000, vocab_size=8192, seeds=(0, 1, 2, 3, 4),
    model={"n_layer": 6, "n_head": 6, "d_model": 384, "context": 512}, micro_batch=16, lr=1e-3, device="auto",
    cpu_threads=None, spark_master="local[*]", fasttext_negatives=10_000, betr_sample=10_000, betr_examples=500,
    zoo_subsets=16,
    zoo_budgets=(300_000, 1_000_000), zoo_model={"n_layer": 4, "n_head": 4, "d_model": 256, "context": 512},
    zoo_sample=3000, zoo_eval_items=500)

PRESETS = {p.name: p for p in (SMOKE, DEFAULT, GPU)}
