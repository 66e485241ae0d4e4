"""``curate report``: one self-contained HTML page for a pipeline run.

Funnel of documents and tokens through the stages (per drop reason and per source), score
histograms with the applied thresholds, duplicate clusters, ordering coherence against a
random order, mixture composition, quarantine, configuration and timings. Plots are
matplotlib figures inlined as SVG; the page has no scripts and loads nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def write_report(output: str | Path, destination: str | Path, *, mixtures: Sequence[str | Path] = (),
                 max_rows: int = 200_000, title: str | None = None) -> Path:
    """Render the report of the run in ``output`` to ``destination`` (written atomically)."""
    from curate.report.html import render

    page = render(Path(output), mixtures=[Path(m) for m in mixtures], max_rows=max_rows, title=title)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(destination)
    return destination
