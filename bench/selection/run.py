"""The whole benchmark: inputs → tokenizer → model zoo → selections (leak-checked) → proxy
training over seeds → table, plot and docs page."""
from __future__ import annotations

import csv
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.selection import report
from bench.selection.data import DATA, Inputs, prepare, read_pairs
from bench.selection.leak import assert_no_leak
from bench.selection.lm import corpus_bpb
from bench.selection.presets import Preset
from bench.selection.selectors import last_stage_dir, run_selectors, selection_records, selector_inputs, source_shares
from bench.selection.training import ablate, chance, mean_acc_norm, train_pool_tokenizer, train_section
from bench.selection.zoo import build_zoo

REPO = Path(__file__).resolve().parents[2]


def heldout_records(inputs: Inputs) -> list[tuple[str, str]]:
    """Everything no selector may see: held-out target text and items, held-out pool pieces."""
    return [*read_pairs(inputs.target_heldout), *read_pairs(inputs.pool_heldout),
            *(pair for path in inputs.heldout_benchmarks.values() for pair in read_pairs(path))]


def proxy_runs(selected: dict[str, Path], inputs: Inputs, preset: Preset, tokenizer: Path, out: Path,
               log=print) -> list[dict]:
    """The same small model trained on every selection at one token budget, once per seed;
    each row gets bits/byte on the held-out target text and the mean benchmark accuracy."""
    benchmarks = sorted(inputs.heldout_benchmarks)
    train = train_section(preset, preset.model, [inputs.heldout_benchmarks[b] for b in benchmarks], preset.eval_items)
    target_texts = [text for _, text in read_pairs(inputs.target_heldout)]
    rows = []
    for seed in preset.seeds:
        log(f"proxy: seed {seed}, {len(selected)} selections at {preset.token_budget:,} tokens")
        seed_dir = out / "proxy" / f"seed-{seed}"
        for row in ablate(selected, token_budget=preset.token_budget, train=train, heldout=inputs.pool_heldout,
                          tokenizer=tokenizer, seed=seed, out=seed_dir, name="selection-benchmark"):
            row["target_bpb"] = corpus_bpb(seed_dir / row["selection"] / "run", tokenizer, target_texts, preset.device)
            row["bench_acc"] = mean_acc_norm(row, benchmarks)
            log(f"  {row['selection']} seed {seed}: target bpb {row['target_bpb']:.4f}, "
                f"pool loss {row['heldout_loss']:.4f}, acc_norm {row['bench_acc']:.3f}")
            rows.append(row)
    return rows


def write_rows(rows: list[dict], out: Path) -> None:
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def run(preset: Preset, out: Path, *, spark=None, seed: int = 0, docs: Path | None = None, data: Path = DATA,
        log=print) -> dict:
    """Run the benchmark under ``out``; write the docs page when the preset names one and ``docs`` is given."""
    started, load_start = time.time(), os.getloadavg()
    phases: dict[str, float] = {}

    def phase(name: str, t0: float) -> None:
        phases[name] = time.time() - t0
        log(f"== {name}: {phases[name]:.0f}s")

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    inputs = prepare(out, preset, seed, data)
    heldout = heldout_records(inputs)
    tokenizer = train_pool_tokenizer(inputs, preset, out / "tokenizer.json")
    log(f"inputs: {inputs.stats}")
    phase("inputs and tokenizer", t0)

    zoo = None
    if preset.needs_zoo():
        t0 = time.time()
        zoo = build_zoo(inputs, preset, tokenizer, out / "zoo", seed, log=log)
        phase(f"model zoo ({zoo['summary']['models']} models)", t0)

    checked = assert_no_leak(heldout, selector_inputs(inputs, preset, zoo))
    log(f"leak check: {checked:,} selector input records, none held out")
    t0 = time.time()
    if spark is None:
        from curate.engine.spark import get_spark

        spark = get_spark(preset.spark_master, {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"})
    selected = run_selectors(spark, inputs, preset, out, seed, zoo, log=log)
    checked += assert_no_leak(heldout, selection_records(selected))
    phase("selections", t0)

    t0 = time.time()
    rows = proxy_runs(selected, inputs, preset, tokenizer, out, log=log)
    phase(f"proxy training ({len(rows)} runs)", t0)
    write_rows(rows, out)
    summary = report.summarize(rows)
    result = {"rows": rows, "summary": summary, "table": report.table(summary), "zoo": zoo and zoo["summary"],
              "inputs": inputs.stats, "phases": phases, "seconds": time.time() - started,
              "leak_checked_records": checked, "chance": chance(inputs.heldout_benchmarks),
              "load": (load_start, os.getloadavg()), "composition": source_shares(inputs.pool, selected),
              "benchmarks": sorted(inputs.heldout_benchmarks),
              "finished_utc": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}"}
    (out / "results.md").write_text(result["table"], encoding="utf-8")
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    if docs is not None and preset.page:
        write_page(result, preset, docs)
    log(result["table"])
    log(f"total {result['seconds']:.0f}s")
    return result


def rewrite_page(preset: Preset, out: Path, docs: Path) -> Path:
    """The docs page again from a finished run's ``result.json`` (no computation), e.g. after a
    change of the report format; the source shares are recomputed from the selection outputs."""
    from curate.core import CurateError

    saved = out / "result.json"
    if not saved.is_file():
        raise CurateError(f"{saved} not found; run the preset first")
    result = json.loads(saved.read_text(encoding="utf-8"))
    result.setdefault("finished_utc", f"{datetime.fromtimestamp(saved.stat().st_mtime, timezone.utc):%Y-%m-%d %H:%M}")
    if "composition" not in result:
        selected = {name: last_stage_dir(out / "selections" / name) for name in preset.selectors}
        result["composition"] = source_shares(out / "inputs" / "pool.jsonl", selected)
    result.setdefault("benchmarks", sorted({k.split("/")[0] for k in result["rows"][0] if k.endswith("/acc_norm")}))
    return write_page(result, preset, docs)


def write_page(result: dict, preset: Preset, docs: Path) -> Path:
    """The results block of ``docs/<preset.page>`` and its plot."""
    image = docs / (Path(preset.page).stem + ".png")
    report.plot(result["summary"], image, f"preset {preset.name}: mean ± std over {len(preset.seeds)} seeds")
    load = result["load"]
    zoo = result["zoo"]
    lines = [
        f"Measured {result['finished_utc']} UTC (end of the run) with preset `{preset.name}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared: 1-min load average {load[0][0]:.1f} at the start, "
        f"{load[1][0]:.1f} at the end).",
        "",
        "```bash",
        f".venv/bin/python -m bench.selection --preset {preset.name}",
        "```",
        "",
        f"Runtime: **{result['seconds'] / 60:.1f} min** in all ("
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in result["phases"].items()) + ").",
        "",
        f"Pool: {result['inputs']['pool_pieces']:,} selectable pieces ({result['inputs']['pool_chars']:,} chars), "
        f"{result['inputs']['pool_heldout_pieces']:,} held-out pieces, {result['inputs']['duplicates_removed']} "
        f"duplicates removed. Target items visible to selectors / held out: "
        + ", ".join(f"{k} {result['inputs']['target_visible'][k]}/{result['inputs']['target_heldout'][k]}"
                    for k in result["inputs"]["target_visible"]) + ".",
        f"Token budget {preset.token_budget:,} per selection; every selector keeps {preset.keep_fraction:.0%} of the "
        f"pool's tokens (heuristics: what passes); model {preset.model}, seeds {list(preset.seeds)}.",
        f"Leak check: {result['leak_checked_records']:,} selector input and output records compared with the "
        "held-out ids and text hashes; none matched.",
    ]
    if zoo:
        lines.append(f"Model zoo: {zoo['models']} models, benchmark error "
                     f"{zoo['error_min']:.3f}–{zoo['error_max']:.3f}, "
                     f"pool bits/byte {zoo['mean_bpb_min']:.3f}–{zoo['mean_bpb_max']:.3f} on {zoo['sample_docs']} "
                     f"pieces; Spearman(error, pool bpb) = {zoo['spearman_error_vs_pool_bpb']:.2f}.")
    lines += ["", report.table(result["summary"]), f"![selection benchmark]({image.name})", "",
              f"Benchmark accuracy per task (chance, averaged over the tasks: {result['chance']:.3f}):", "",
              report.per_benchmark_table(result["rows"], result["benchmarks"]),
              "What each selection is made of (percent of characters by pool source):", "",
              report.composition_table(result["composition"]),
              "Differences to random whose 95 % t interval (over seeds, paired by seed) excludes zero:", "",
              *report.verdicts(result["summary"])]
    page = docs / preset.page
    report.write_block(page, "\n".join(lines), f"Selection benchmark ({preset.name} preset)")
    return page
