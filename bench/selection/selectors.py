"""Every selector as a curate pipeline over the same pool, run with curate's runner: each keeps
the same share of the pool's tokens (``keep_fraction``), except the heuristic filters, which keep
what passes (the proxy training then takes the same token budget from every selection)."""
from __future__ import annotations

from pathlib import Path

from bench.selection.data import Inputs, read_pairs, unit
from bench.selection.presets import Preset
from curate.core import CurateError

HEURISTICS = ["gopher_quality", "gopher_repetition", "c4"]  # Gopher (Rae et al. 2021), C4 (Raffel et al. 2020)
FASTTEXT_OPTIONS = {"bucket": 200_000}  # DCLM recipe with a smaller n-gram table: 80 MB instead of 800 MB
TARGETED = ("fasttext", "dsir", "betr", "perplexity_correlation", "preselect")


def train_target_classifier(inputs: Inputs, preset: Preset, path: Path, seed: int) -> dict:
    """fastText on target-like text (DCLM recipe, Li et al. 2024): positives = visible target
    examples, negatives = a seeded random sample of the pool."""
    from curate.quality.classifier import train_classifier

    positives = [text for _, text in read_pairs(inputs.target_visible)]
    pool = sorted(read_pairs(inputs.pool), key=lambda r: (unit(r[0], seed + 1), r[0]))
    negatives = [text for _, text in pool[:preset.fasttext_negatives]]
    return train_classifier(positives, negatives, path, seed=seed, **FASTTEXT_OPTIONS)


def stages_for(name: str, inputs: Inputs, preset: Preset, work: Path, zoo: dict | None) -> list[dict]:
    """The pipeline stages of selector ``name``."""
    f = preset.keep_fraction
    if name == "random":
        return [{"sample": {"fraction": f}}]
    if name == "heuristics":
        return [{"score": HEURISTICS}, {"select": {}}]
    if name == "fasttext":
        return [{"fasttext_score": {"model": str(work / "fasttext_target.bin")}},
                {"select_budget": {"score": "fasttext_score.prob", "keep_tokens_fraction": f}}]
    if name == "dsir":  # Xie et al. 2023: importance resampling over hashed n-grams
        return [{"dsir_score": {"target": [str(inputs.target_visible)], "target_field": "text"}},
                {"select_budget": {"score": "dsir_score.log_weight", "keep_tokens_fraction": f, "resample": "gumbel"}}]
    if name == "betr":  # Mizrahi et al. 2025
        return [{"benchmark_similarity": {
            "targets": [{"path": str(inputs.target_visible), "template": "{text}"}],
            "examples_per_benchmark": preset.betr_examples, "sample_size": preset.betr_sample,
            "keep_tokens_fraction": f, "classifier": FASTTEXT_OPTIONS}}]
    if name in ("perplexity_correlation", "preselect"):  # Thrush et al. 2024; Shum et al. 2025
        if zoo is None:
            raise CurateError(f"selector {name} needs the model zoo; it was not built")
        params = {"errors": str(zoo["errors"]), "matrix": str(zoo["matrix"]), "keep_fraction": f,
                  "sample_docs": preset.zoo_sample, "classifier": FASTTEXT_OPTIONS}
        if name == "preselect":
            params["label_fraction"] = 0.2
        return [{name: params}]
    raise CurateError(f"unknown selector '{name}'")


def run_selectors(spark, inputs: Inputs, preset: Preset, out: Path, seed: int, zoo: dict | None,
                  log=print) -> dict[str, Path]:
    """Run each selector's pipeline; return selector -> directory of its selected documents."""
    from curate.engine.runner import run_pipeline

    work = out / "selections"
    work.mkdir(parents=True, exist_ok=True)
    if "fasttext" in preset.selectors and not (work / "fasttext_target.bin").exists():
        report = train_target_classifier(inputs, preset, work / "fasttext_target.bin", seed)
        log(f"fasttext target classifier: held-out metrics {report.get('metrics')}")
    selected = {}
    for name in preset.selectors:
        stages = stages_for(name, inputs, preset, work, zoo)
        pipeline = {"name": f"select-{name}", "input": {"path": str(inputs.pool), "format": "jsonl"},
                    "output": str(work / name), "seed": seed, "stages": stages}
        log(f"selector {name}: {', '.join(next(iter(s)) for s in stages)}")
        run_pipeline(pipeline, spark=spark, log=lambda m, n=name: log(f"  {n} {m}"))
        selected[name] = last_stage_dir(work / name)
    return selected


def selector_inputs(inputs: Inputs, preset: Preset, zoo: dict | None) -> dict[str, list[tuple[str, str]]]:
    """What each selector reads: the pool, plus the visible target for the targeted ones, plus the
    zoo's training data and evaluation items for the zoo-based ones."""
    pool = read_pairs(inputs.pool)
    visible = read_pairs(inputs.target_visible)
    seen = {}
    for name in preset.selectors:
        records = pool + (visible if name in TARGETED else [])
        if zoo is not None and name in ("perplexity_correlation", "preselect"):
            records = records + [pair for path in zoo["inputs"] for pair in read_pairs(path)]
        seen[name] = records
    return seen


def last_stage_dir(pipeline_out: Path) -> Path:
    """The directory of a finished pipeline's last stage (``NN-name``, highest NN)."""
    stages = sorted(p for p in pipeline_out.iterdir() if p.is_dir() and p.name[:2].isdigit())
    if not stages:
        raise CurateError(f"{pipeline_out}: no stage directories; run the selector first")
    return stages[-1]


def source_shares(pool: Path, selected: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Percent of characters from each pool source, in the pool and in every selection."""
    import pyarrow.parquet as pq

    from curate.io.jsonl import read_records
    from curate.train.mix import source_files

    def shares(pairs) -> dict[str, float]:
        chars: dict[str, int] = {}
        for source, text in pairs:
            chars[source] = chars.get(source, 0) + len(text)
        total = sum(chars.values()) or 1
        return {source: 100.0 * n / total for source, n in sorted(chars.items())}

    out = {"pool": shares((r["source"], r["text"]) for _, r in read_records(pool))}
    for name, path in selected.items():
        tables = [pq.read_table(f, columns=["source", "text"]) for f in source_files(path)]
        out[name] = shares(pair for t in tables for pair in zip(t.column("source").to_pylist(),
                                                                  t.column("text").to_pylist()))
    return out


def selection_records(selected: dict[str, Path]) -> dict[str, list[tuple[str, str]]]:
    """(id, text) of every selection's output."""
    from curate.train.mix import read_source_table

    out = {}
    for name, path in selected.items():
        table = read_source_table(path)
        out[f"{name} (selected)"] = list(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    return out
