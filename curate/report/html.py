"""Assemble the self-contained HTML report: inline CSS and inline SVG plots, no scripts, no links out."""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from curate.report import data, plots

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:1.5rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0} .cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;min-width:9rem}
.card .v{font-size:1.3rem;font-weight:600} .card .k{color:#666;font-size:.8rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border-bottom:1px solid #eee;padding:.25rem .6rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums} .grid{display:flex;flex-wrap:wrap;gap:.5rem}
pre{background:#f7f7f7;padding:.4rem;margin:0;font-size:.75rem;white-space:pre-wrap;max-width:40rem}
.muted{color:#888} svg{max-width:100%;height:auto}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{int(value):,}"


def pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "–"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          row_ids: Sequence[str] | None = None, table_id: str | None = None) -> str:
    """An HTML table; cells are escaped unless wrapped in :class:`Raw`; numeric columns right-aligned."""
    head = "".join(f'<th class="n">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        rid = f' data-row="{esc(row_ids[r])}"' if row_ids else ""
        cells = "".join(f'<td class="n">{_cell(c)}</td>' if i in numeric else f"<td>{_cell(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{rid}>{cells}</tr>")
    tid = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Raw(str):
    """Already-safe HTML for a table cell."""


def _cell(value: Any) -> str:
    return value if isinstance(value, Raw) else esc(value)


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{"".join(parts)}</section>'


def note(text: str) -> str:
    return f'<p class="muted">{esc(text)}</p>'


# ---------------------------------------------------------------------------- sections


def summary_section(funnel: list[dict]) -> str:
    first, last = funnel[0], funnel[-1]
    read_in = first["rows_in"]
    cards = [("documents read", num(read_in)), ("documents kept", num(last["rows_out"])),
             ("kept", pct(last["rows_out"], read_in)),
             ("characters kept", num(last["chars_out"])), ("≈ tokens kept", num(last["tokens_out"])),
             ("quarantined", num(sum(v for k, v in first["removed"].items() if k.startswith("quarantine"))))]
    html_cards = "".join(f'<div class="card" data-card="{esc(k)}"><div class="v">{v}</div>'
                         f'<div class="k">{esc(k)}</div></div>' for k, v in cards)
    return f'<div class="cards" id="summary">{html_cards}</div>'


def funnel_section(funnel: list[dict]) -> str:
    read_in = funnel[0]["rows_in"]
    rows = [(f["step"], num(f["rows_in"]), num(f["rows_out"]), num(sum(f["removed"].values())),
             pct(f["rows_out"], read_in), num(f["chars_out"]), num(f["tokens_out"]),
             Raw("<br>".join(f"{esc(r)}: {num(n)}" for r, n in sorted(f["removed"].items(), key=lambda x: -x[1]))))
            for f in funnel]
    chart = plots.funnel_chart([f["step"] for f in funnel], [f["rows_out"] for f in funnel],
                               [f["tokens_out"] for f in funnel])
    reasons: dict[str, list[float]] = {}
    removing = [f for f in funnel if f["removed"]]
    for i, f in enumerate(removing):
        for reason, n in f["removed"].items():
            reasons.setdefault(reason, [0.0] * len(removing))[i] = n
    by_reason = "" if not removing else plots.stacked_bars(
        "Documents removed per step, by reason", [f["step"] for f in removing], _top(reasons, 8), "documents")
    return section("funnel", "Funnel: documents and tokens through the stages",
                   table(["step", "docs in", "docs out", "removed", "kept of read", "chars out",
                          "≈ tokens out", "removed by reason"], rows, numeric=(1, 2, 3, 4, 5, 6),
                         row_ids=[f["step"] for f in funnel], table_id="funnel-table"),
                   note("Tokens are estimated as characters / 4 (the `curate mix` default without a tokenizer)."),
                   chart, by_reason)


def _top(series: dict[str, list[float]], k: int) -> dict[str, list[float]]:
    """The k largest series; the rest summed as 'other'."""
    ranked = sorted(series.items(), key=lambda kv: -sum(kv[1]))
    top = dict(ranked[:k])
    if len(ranked) > k:
        top["other"] = [sum(v) for v in zip(*(vals for _, vals in ranked[k:]))]
    return top


def source_section(src: dict | None) -> str:
    if src is None:
        return section("sources", "Per source", note("The input has no 'source' column."))
    steps = list(src["kept"])
    rows = [(s, *[num(src["kept"][step].get(s, 0)) for step in steps]) for s in src["sources"]]
    kept = table(["source", *steps], rows, numeric=tuple(range(1, len(steps) + 1)),
                 row_ids=src["sources"], table_id="source-table")
    removed_rows = [(*key.split("\t"), num(n)) for key, n in sorted(src["removed"].items(), key=lambda x: -x[1])]
    removed = table(["source", "reason", "documents"], removed_rows, numeric=(2,), table_id="source-removed")
    chart = plots.stacked_bars("Documents kept per source", steps,
                               {s: [src["kept"][step].get(s, 0) for step in steps] for s in src["sources"]},
                               "documents")
    return section("sources", f"Per source (column '{src['column']}')", kept, chart,
                   "<h3>Removed, per source and reason</h3>", removed if removed_rows else note("Nothing removed."))


def scores_section(steps: list[data.Step], max_rows: int) -> str:
    columns = data.score_columns(steps)
    if not columns:
        return section("scores", "Score distributions", note("No score columns in this run."))
    figures, rows = [], []
    for col in columns:
        values = data.score_values(steps, col, max_rows)
        if not values:
            continue
        thresholds = ", ".join(f"{k} = {v:g}" for k, v in sorted(col.thresholds.items()))
        rows.append((col.name, col.step, num(len(values)), num(min(values)), num(sorted(values)[len(values) // 2]),
                     num(max(values)), thresholds or "–"))
        figures.append(f'<div data-score="{esc(col.name)}">'
                       f'{plots.histogram(f"{col.name} ({col.step})", values, col.thresholds)}</div>')
    return section("scores", "Score distributions",
                   note(f"Each score where its stage added it (before selection); at most {max_rows:,} values "
                        f"per column. Dashed lines: thresholds the selection applied."),
                   table(["score", "added by", "values", "min", "median", "max", "thresholds"], rows,
                         numeric=(2, 3, 4, 5), row_ids=[r[0] for r in rows], table_id="score-table"),
                   f'<div class="grid">{"".join(figures)}</div>')


def dedup_section(dedups: list[dict]) -> str:
    if not dedups:
        return ""
    parts = []
    for d in dedups:
        rows = [("documents removed", num(d["removed"]))]
        rows += [(k.replace("_", " "), num(v)) for k, v in d["details"].items()]
        parts.append(f"<h3>{esc(d['step'])}</h3>" + table(["", ""], rows, numeric=(1,), table_id=f"dedup-{d['step']}"))
        sizes = d["component_sizes"]
        if sizes:
            labels = sorted(sizes, key=lambda s: int(s.split("-")[0]))
            parts.append(plots.bars(f"Duplicate cluster sizes ({d['step']})", labels, [sizes[k] for k in labels],
                                    "clusters"))
    return section("dedup", "Duplicates", *parts)


def domain_section(labelled: list[dict]) -> str:
    """Documents and tokens per domain of each ``domain_label`` step, with clusters' top terms."""
    if not labelled:
        return ""
    parts = []
    for d in labelled:
        names = list(d["domains"])
        total = sum(v["tokens"] for v in d["domains"].values()) or 1
        rows = [(n, num(v["documents"]), num(v["tokens"]), pct(v["tokens"], total), " ".join(v.get("top_terms", [])))
                for n, v in d["domains"].items()]
        parts.append(f"<h3>{esc(d['step'])}</h3><p class=\"sub\">column '{esc(d['column'])}' from {esc(d['source'])}"
                     f" · tokens counted by {esc(d['token_count'])}</p>")
        parts.append(table(["domain", "documents", "tokens", "token share", "top terms"], rows, numeric=(1, 2, 3),
                           row_ids=names, table_id=f"domains-{d['step']}"))
    return section("domains", "Domains", *parts)


def ordering_section(orders: list[dict]) -> str:
    if not orders:
        return ""
    parts = []
    for o in orders:
        rows = [("mean adjacent similarity", num(o["similarity"]), num(o["random_similarity"]))]
        if o["same_label"] is not None:
            rows.append(("adjacent same label", num(o["same_label"]), num(o["random_same_label"])))
        parts.append(f"<h3>{esc(o['step'])}</h3>" + table(["", "this order", "random order"], rows, numeric=(1, 2),
                                                          table_id=f"order-{o['step']}"))
        if o["similarity"] is not None and o["random_similarity"] is not None:
            parts.append(plots.bars("Adjacent-document similarity", ["this order", "random order"],
                                    [o["similarity"], o["random_similarity"]], "mean cosine", fmt="{:.3f}"))
        parts.append(table(["", ""], [(k.replace("_", " "), num(v)) for k, v in o["details"].items()], numeric=(1,)))
    return section("ordering", "Ordering coherence (against a random order)", *parts)


def mixture_section(mixtures: list[tuple[str, dict]]) -> str:
    if not mixtures:
        return ""
    parts = []
    for path, m in mixtures:
        names = list(m["sources"])
        rows = [(n, num(s.get("weight")), num(s["target_tokens"]), num(s["tokens"]),
                 pct(s["tokens"], m["total_tokens"]), num(s["documents"]), f"{s['epochs']:.3f}",
                 "yes" if s.get("capped") else "")
                for n, s in m["sources"].items()]
        parts.append(f"<h3>{esc(m.get('name', 'mixture'))}</h3><p class=\"sub\">{esc(path)} · tokens: "
                     f"{esc(m.get('token_count'))}</p>")
        parts.append(table(["source", "weight", "target tokens", "tokens", "share", "documents", "epochs", "capped"],
                           rows, numeric=(1, 2, 3, 4, 5, 6), row_ids=names, table_id="mixture-table"))
        parts.append(plots.stacked_bars("Mixture composition (tokens)", ["mixture"],
                                        {n: [m["sources"][n]["tokens"]] for n in names}, "tokens", horizontal=True))
    return section("mixture", "Mixture composition", *parts)


def quarantine_section(q: dict) -> str:
    rows = [(r, num(n)) for r, n in sorted(q["reasons"].items(), key=lambda x: -x[1])]
    parts = [f'<p id="quarantine-total">{num(q["records"])} malformed record(s) quarantined.</p>']
    if rows:
        parts.append(table(["reason", "records"], rows, numeric=(1,), table_id="quarantine-reasons"))
    if q["file_problems"]:
        parts.append(table(["file", "problem"], [(p["file"], p["reason"]) for p in q["file_problems"]]))
    if q["skipped_records"]:
        parts.append(table(["skipped record type (web archives)", "records"],
                           [(k, num(v)) for k, v in q["skipped_records"].items()], numeric=(1,),
                           table_id="skipped-records"))
    if q["repairs"]:
        parts.append(table(["repair", "documents"], [(k, num(v)) for k, v in q["repairs"].items()], numeric=(1,)))
    if q["samples"]:
        parts.append("<h3>First records</h3>" + table(
            ["file", "line", "reason", "snippet"],
            [(s.get("file"), s.get("line"), s.get("reason"), (s.get("snippet") or "")[:160]) for s in q["samples"]]))
    return section("quarantine", "Quarantine", *parts)


def config_section(steps: list[data.Step]) -> str:
    rows, labels, seconds = [], [], []
    for s in steps:
        t = s.manifest.get("timings") or {}
        rows.append((s.dirname, Raw(f"<pre>{esc(json.dumps(s.params, indent=1, sort_keys=True, default=str))}</pre>"),
                     (s.manifest.get("config_hash") or "")[:12], t.get("started", ""), num(t.get("seconds"))))
        labels.append(s.dirname)
        seconds.append(float(t.get("seconds") or 0.0))
    versions = sorted({s.manifest.get("code_version", "?") for s in steps})
    return section("config", "Run configuration and timings",
                   note(f"curate version(s): {', '.join(versions)}; total {sum(seconds):,.1f} s of stage time."),
                   table(["step", "parameters", "config hash", "started", "seconds"], rows, numeric=(4,),
                         row_ids=labels, table_id="config-table"),
                   plots.bars("Seconds per step", labels, seconds, "seconds", fmt="{:.1f}"))


def render(output: Path, *, mixtures: Sequence[Path] = (), max_rows: int = 200_000,
           title: str | None = None) -> str:
    """The whole report of the run in ``output`` as one HTML string."""
    output = Path(output).resolve()
    steps = data.load_steps(output)
    funnel = data.funnel(steps)
    mix = [(str(p), data.load_mixture(p)) for p in mixtures]
    title = title or f"curate report: {output.name}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join([
        f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(output)} · {len(steps)} steps · generated {generated}</p>",
        summary_section(funnel), funnel_section(funnel), source_section(data.source_funnel(steps)),
        scores_section(steps, max_rows), dedup_section(data.dedup_summaries(steps)),
        domain_section(data.domain_summaries(steps)), ordering_section(data.ordering_summaries(steps)),
        mixture_section(mix),
        quarantine_section(data.quarantine_summary(output, steps)), config_section(steps)])
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")
