"""Matplotlib figures rendered to inline SVG strings (text kept as text, no external files)."""
from __future__ import annotations

import io
import re
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

PALETTE = ("#3b6ea8", "#d9822b", "#4f9a5a", "#b8475a", "#7a5ba6", "#8c6d46", "#c46bae", "#2a9d9f")
OTHER = "#b0b0b0"


@contextmanager
def figure(width: float = 7.0, height: float = 3.2) -> Iterator:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                                "axes.spines.right": False, "svg.hashsalt": "curate"}):
        fig, ax = plt.subplots(figsize=(width, height))
        try:
            yield fig, ax
        finally:
            plt.close(fig)


def to_svg(fig) -> str:
    """The figure as an ``<svg>`` element (XML prolog, DOCTYPE and metadata dropped)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


def funnel_chart(steps: Sequence[str], docs: Sequence[int], tokens: Sequence[int | None]) -> str:
    """Documents (bars) and estimated tokens (line, right axis) left after each step."""
    with figure() as (fig, ax):
        x = range(len(steps))
        ax.bar(x, docs, color=PALETTE[0], label="documents")
        for i, n in enumerate(docs):
            ax.annotate(f"{n:,}", (i, n), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(x), steps, rotation=20, ha="right")
        ax.set_ylabel("documents")
        if any(t for t in tokens):
            right = ax.twinx()
            right.plot(list(x), [t or 0 for t in tokens], color=PALETTE[1], marker="o", label="≈ tokens")
            right.set_ylabel("≈ tokens (chars / 4)")
            right.spines["top"].set_visible(False)
        ax.set_title("Documents and tokens through the pipeline")
        return to_svg(fig)


def stacked_bars(title: str, categories: Sequence[str], series: Mapping[str, Sequence[float]],
                 ylabel: str, horizontal: bool = False) -> str:
    """One bar per category, stacked by series (e.g. per source, removed by reason)."""
    with figure(7.0, max(2.6, 0.32 * len(categories) + 1.2) if horizontal else 3.2) as (fig, ax):
        base = [0.0] * len(categories)
        for i, (name, values) in enumerate(series.items()):
            color = OTHER if name == "other" else PALETTE[i % len(PALETTE)]
            if horizontal:
                ax.barh(categories, values, left=base, label=name, color=color)
            else:
                ax.bar(categories, values, bottom=base, label=name, color=color)
            base = [b + v for b, v in zip(base, values)]
        if horizontal:
            ax.set_xlabel(ylabel)
            ax.invert_yaxis()
        else:
            ax.set_ylabel(ylabel)
            ax.tick_params(axis="x", rotation=20)
        if len(series) > 1:
            ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(title)
        return to_svg(fig)


def histogram(title: str, values: Sequence[float], thresholds: Mapping[str, float], bins: int = 40) -> str:
    """A histogram with each known selection threshold drawn as a labelled vertical line."""
    with figure(4.6, 2.6) as (fig, ax):
        ax.hist(values, bins=bins, color=PALETTE[0], alpha=0.85)
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        for i, (label, value) in enumerate(sorted(thresholds.items())):
            if lo - (hi - lo) <= value <= hi + (hi - lo):  # only lines that land near the data
                ax.axvline(value, color=PALETTE[(i + 3) % len(PALETTE)], linestyle="--", linewidth=1.2,
                           label=f"{label} = {value:g}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("documents")
        return to_svg(fig)


def bars(title: str, labels: Sequence[str], values: Sequence[float], ylabel: str, fmt: str = "{:,}") -> str:
    with figure(5.5, 2.8) as (fig, ax):
        ax.bar(labels, values, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))])
        for i, v in enumerate(values):
            ax.annotate(fmt.format(v), (i, v), ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=15)
        return to_svg(fig)
