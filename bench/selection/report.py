"""Aggregate the proxy runs over seeds (mean ± sample std; differences to random paired by seed)
into a Markdown table, a plot, and the results block of a docs page."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

METRICS = (  # column, label, lower is better
    ("target_bpb", "held-out target bits/byte", True),
    ("heldout_loss", "held-out pool loss (nats/token)", True),
    ("bench_acc", "benchmark acc_norm (held-out items)", False),
)
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# Two-sided 95 % quantiles of Student's t by degrees of freedom (seeds − 1); 1.96 beyond the table.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(list(values), dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(rows: list[dict], baseline: str = "random") -> list[dict]:
    """One row per selection: mean and std of each metric over seeds, and the mean and std of its
    per-seed difference to ``baseline`` (same seed, same data order and initial weights)."""
    by_selection: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_selection.setdefault(row["selection"], {})[row["seed"]] = row
    base = by_selection.get(baseline, {})
    out = []
    for name, seeds in by_selection.items():
        summary = {"selection": name, "seeds": len(seeds),
                   "selected_tokens": int(np.mean([r["selected_tokens"] for r in seeds.values()])),
                   "epochs": float(np.mean([r["epochs"] for r in seeds.values()]))}
        for metric, _, _ in METRICS:
            summary[metric] = mean_std(r[metric] for r in seeds.values())
            paired = [r[metric] - base[s][metric] for s, r in seeds.items() if s in base]
            summary[f"{metric}_delta"] = mean_std(paired) if paired and name != baseline else None
        out.append(summary)
    return out


def fmt(pair, digits: int = 3, signed: bool = False) -> str:
    if pair is None:
        return "—"
    mean, std = pair
    return f"{mean:+.{digits}f} ± {std:.{digits}f}" if signed else f"{mean:.{digits}f} ± {std:.{digits}f}"


def table(summary: list[dict]) -> str:
    head = ["selection", "selected tokens", "epochs"]
    for _, label, lower in METRICS:
        head += [label + (" ↓" if lower else " ↑"), "Δ vs random"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for s in summary:
        cells = [s["selection"], f"{s['selected_tokens']:,}", f"{s['epochs']:.2f}"]
        for metric, _, _ in METRICS:
            cells += [fmt(s[metric]), fmt(s[f"{metric}_delta"], signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_benchmark_table(rows: list[dict], benchmarks: list[str]) -> str:
    names = list(dict.fromkeys(r["selection"] for r in rows))
    lines = ["| selection | " + " | ".join(f"{b} acc_norm" for b in benchmarks) + " |",
             "|---|" + "---:|" * len(benchmarks)]
    for name in names:
        mine = [r for r in rows if r["selection"] == name]
        lines.append(f"| {name} | " + " | ".join(fmt(mean_std(r[f'{b}/acc_norm'] for r in mine)) for b in benchmarks)
                     + " |")
    return "\n".join(lines) + "\n"


def interval_excludes_zero(mean: float, std: float, n: int) -> bool:
    """Whether the 95 % t interval of a mean paired difference (n seeds) excludes 0."""
    if n < 2:
        return False
    return abs(mean) > T95.get(n - 1, 1.96) * std / math.sqrt(n)


def verdicts(summary: list[dict]) -> list[str]:
    """Plain statements: which selections differ from random, by the 95 % t interval of the
    per-seed paired difference."""
    lines = []
    for metric, label, lower in METRICS:
        better, worse, unclear = [], [], []
        for s in summary:
            delta = s[f"{metric}_delta"]
            if delta is None:
                continue
            mean, std = delta
            if interval_excludes_zero(mean, std, s["seeds"]):
                (better if (mean < 0 if lower else mean > 0) else worse).append(f"{s['selection']} ({mean:+.3f})")
            else:
                unclear.append(s["selection"])
        lines.append(f"- **{label}**: better than random: {', '.join(better) or 'none'}; worse: "
                     f"{', '.join(worse) or 'none'}; within seed noise: {', '.join(unclear) or 'none'}.")
    return lines


def composition_table(shares: dict[str, dict[str, float]]) -> str:
    """Percent of characters per pool source (rows) in the pool and in each selection (columns)."""
    columns = list(shares)
    sources = sorted({src for per in shares.values() for src in per})
    lines = ["| source | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {src} | " + " | ".join(f"{shares[c].get(src, 0.0):.0f}" for c in columns) + " |" for src in sources]
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["selection"] for s in summary]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    for ax, (metric, label, lower) in zip(axes, METRICS):
        means = [s[metric][0] for s in summary]
        stds = [s[metric][1] for s in summary]
        ax.bar(names, means, yerr=stds, capsize=3, color=["tab:gray" if n == "random" else "tab:blue" for n in names])
        if "random" in names:
            ax.axhline(means[names.index("random")], color="tab:gray", linestyle="--", linewidth=1)
        low, high = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
        pad = (high - low) * 0.3 or 0.01
        ax.set_ylim(low - pad, high + pad)
        ax.set_title(label + (" (lower is better)" if lower else " (higher is better)"), fontsize=9)
        ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_block(page: Path, block: str, title: str) -> None:
    """Replace the results block of ``page`` (between the markers), keeping the rest; create it if needed."""
    text = page.read_text(encoding="utf-8") if page.exists() else f"# {title}\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    page.write_text(f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}", encoding="utf-8")
