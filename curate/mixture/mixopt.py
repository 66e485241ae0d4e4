"""``curate mixopt``: choose a training mixture from proxy runs (RegMix, Liu et al. 2024; Olmix).

1. The pool is split by its domain column; tokens per domain give the natural distribution.
2. ``mixtures`` Dirichlet draws around it; one small proxy per mixture, trained at the same
   token budget through mix → tokenize → train (:mod:`curate.mixture.proxies`).
3. A regression from realised weights to the target loss (linear and LightGBM, the lower
   cross-validated MSE wins; its out-of-fold Spearman correlation is reported).
4. The proposal: the mean of the best predicted feasible candidates under per-domain
   repetition caps and an optional KL bound (:mod:`curate.mixture.search`), written as a
   ``curate mix`` spec; then (``validate``) proposed, natural and uniform trained at the budget.

Everything is built before any training is refused: a domain with no tokens, a budget the caps
cannot meet, a target with no documents each fail in one line first.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from curate.core import CurateError
from curate.mixture import proxies as px
from curate.mixture import search
from curate.mixture.spec import MixoptSpec

VALIDATION = ("proposed", "natural", "uniform")


def run_mixopt(spec: MixoptSpec, out: str | Path, *, log: Callable[[str], None] = print, plot: bool = True) -> dict:
    """Search a mixture for ``spec``; write results, plots, the proposed mix spec and summary.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, spec)
    paths = px.split_pool(spec.pool, spec.domain_column, spec.domains, out)
    domains = list(paths)
    if len(domains) < 2:
        raise CurateError(f"the pool has {len(domains)} domain(s) in '{spec.domain_column}'; a mixture needs >= 2")
    unknown = sorted(set(spec.caps) - set(domains))
    if unknown:
        raise CurateError(f"caps name domain(s) {', '.join(unknown)} that the pool does not have; "
                          f"its domains: {', '.join(domains)}")
    tok = px.tokenizer_for(spec, paths, out)
    available = px.domain_tokens(paths, tok)
    base, _steps = px.proxy_config(spec.train, spec.token_budget)
    mixture_tokens = spec.token_budget + base.model.context + 1  # as ablate: contexts need T+1 tokens
    tokens = np.array([available[d] for d in domains], dtype=np.float64)
    caps = np.array([spec.cap(d) for d in domains])
    _check_budget(domains, tokens, caps, mixture_tokens)
    target = px.write_target_shards(px.target_texts(spec), tok, out, base.model.context)
    natural = search.natural_weights(tokens)
    ceiling = search.max_weights(tokens, caps, mixture_tokens)
    log(f"{len(domains)} domains, natural mix " + ", ".join(f"{d} {w:.3f}" for d, w in zip(domains, natural)))

    def proxy(name: str, weights: np.ndarray, where: str) -> px.Proxy:
        return px.Proxy(name, {d: float(w) for d, w in zip(domains, weights)}, {d: str(p) for d, p in paths.items()},
                        {d: spec.cap(d) for d in domains}, str(out / where / name), str(tok), str(target),
                        spec.train, spec.token_budget, spec.seed)

    sampled = search.dirichlet_mixtures(natural, spec.mixtures, spec.concentration, spec.seed)
    runs = px.run_proxies([proxy(f"p{i:03d}", w, px.PROXIES_DIR) for i, w in enumerate(sampled)], spec.workers, log)
    x = np.stack([px.weight_vector(r, domains) for r in runs])
    y = np.array([r["target_loss"] for r in runs])
    fits = search.choose_regression(x, y, spec.models, spec.folds, spec.seed)
    best = fits[0]
    log(f"regression: {best.name} (cv mse {best.cv_mse:.4g}, out-of-fold Spearman {_fmt(_finite(best.cv_spearman))})")
    proposed, info = search.propose(best.predict, natural, ceiling, spec.kl_bound, candidates=spec.candidates,
                                    top_k=spec.top_k, seed=spec.seed)
    spec_path = write_mix_spec(out / "proposed_mix.yaml", spec, domains, proposed, mixture_tokens, tok)
    validation = []
    if spec.validate:
        uniform = np.full(len(domains), 1.0 / len(domains))
        planned = dict(zip(VALIDATION, (proposed, natural, uniform)))
        validation = px.run_proxies([proxy(n, w, "validate") for n, w in planned.items()], spec.workers, log)
        for r in validation:
            r["predicted_loss"] = float(best.predict(px.weight_vector(r, domains)[None, :])[0])
    summary = _summary(spec, domains, available, natural, proposed, info, fits, validation, spec_path)
    write_outputs(out, runs, domains, best, summary, plot=plot)
    return summary


def _claim(out: Path, spec: MixoptSpec) -> None:
    """Record the spec's digest in ``out``; a rerun with another spec refuses (its proxies would mix)."""
    mark = out / "spec.json"
    if mark.exists():
        seen = json.loads(mark.read_text(encoding="utf-8")).get("digest")
        if seen != spec.digest():
            raise CurateError(f"{out} holds proxies of another mixopt spec (digest {seen}); use a new -o directory")
        return
    mark.write_text(json.dumps({"digest": spec.digest(), "spec": spec.__dict__}, indent=2, default=str),
                    encoding="utf-8")


def _check_budget(domains: list[str], tokens: np.ndarray, caps: np.ndarray, needed: int) -> None:
    """The caps must let some mixture reach the budget: Σ max_epochs × tokens >= budget."""
    most = int((tokens * caps).sum())
    if most < needed:
        raise CurateError(f"no mixture reaches {needed:,} tokens under the repetition caps: the pool gives at most "
                          f"{most:,} (Σ max_epochs × tokens over {len(domains)} domains); raise max_epochs/caps "
                          "or lower token_budget")


def write_mix_spec(path: Path, spec: MixoptSpec, domains: list[str], weights: np.ndarray, total: int,
                   tokenizer: Path) -> Path:
    """The proposal as a ``curate mix`` spec over the pool itself (one ``where`` per domain)."""
    sources = {d: {"path": spec.pool, "where": {"column": spec.domain_column, "min": d, "max": d},
                   "weight": round(float(w), 6), "max_epochs": spec.cap(d)} for d, w in zip(domains, weights)}
    body = {"name": f"{spec.name}-proposed", "seed": spec.seed, "total_tokens": int(total),
            "tokenizer": str(tokenizer), "sources": sources}
    path.write_text(f"# proposed by curate mixopt ({spec.name}); scale total_tokens to the real run\n"
                    + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _summary(spec, domains, available, natural, proposed, info, fits, validation, spec_path) -> dict:
    share = lambda w: {d: round(float(v), 6) for d, v in zip(domains, w)}  # noqa: E731
    return {
        "name": spec.name, "domains": domains, "available_tokens": available, "natural": share(natural),
        "caps": {d: spec.cap(d) for d in domains}, "kl_bound": spec.kl_bound, "proposed": share(proposed),
        "proposal": info, "mix_spec": str(spec_path),
        "regression": {"chosen": fits[0].name,
                       "models": {f.name: {"cv_mse": f.cv_mse, "cv_spearman": _finite(f.cv_spearman)} for f in fits}},
        "validation": [{"mixture": r["proxy"], "target_loss": r["target_loss"], "predicted_loss": r["predicted_loss"],
                        "weights": r["weights"]} for r in validation],
    }


def _finite(x: float) -> float | None:
    """None for NaN (a constant prediction has no rank correlation), so summary.json stays strict JSON."""
    return x if x == x else None


# --------------------------------------------------------------------------- outputs

def write_outputs(out: Path, runs: list[dict], domains: list[str], best, summary: dict, *, plot: bool) -> None:
    """results.{json,csv,md} (one row per proxy), summary.json, report.md and the two plots."""
    from curate.train.ablate import markdown_table, write_results

    rows = [{"selection": r["proxy"], **{f"w_{d}": r["weights"].get(d, 0.0) for d in domains},
             "target_loss": r["target_loss"], "predicted_cv": float(p)} for r, p in zip(runs, best.cv_predictions)]
    write_results(rows, out, plot=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if plot:
        plot_predictions(rows, best.name, summary["regression"]["models"][best.name]["cv_spearman"],
                         out / "predicted_vs_actual.png")
        plot_weights(summary, out / "weights.png")
    (out / "report.md").write_text(report_markdown(rows, summary, markdown_table, plot), encoding="utf-8")


def report_markdown(rows: list[dict], summary: dict, table, plot: bool) -> str:
    reg = summary["regression"]
    lines = [f"# mixopt: {summary['name']}", "", "## Regression (weights → target loss)", ""]
    lines += [f"- {name}: cross-validated MSE {m['cv_mse']:.4g}, out-of-fold Spearman {_fmt(m['cv_spearman'])}"
              + (" (chosen)" if name == reg["chosen"] else "") for name, m in reg["models"].items()]
    lines += ["", "## Weights", "", table([{"selection": d, "natural": summary["natural"][d],
                                            "proposed": summary["proposed"][d], "max_epochs": summary["caps"][d]}
                                           for d in summary["domains"]])]
    lines += [f"Proposal: {summary['proposal']}; mix spec: `{summary['mix_spec']}`", ""]
    if summary["validation"]:
        lines += ["## Validation (same budget, same seed)", "",
                  table([{"selection": v["mixture"], "target_loss": v["target_loss"],
                          "predicted_loss": v["predicted_loss"]} for v in summary["validation"]])]
    lines += ["## Proxies", "", table(rows)]
    if plot:
        lines += ["![predicted vs actual](predicted_vs_actual.png) ![weights](weights.png)", ""]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "n/a (constant predictions)" if x is None else f"{x:.3f}"


def plot_predictions(rows: list[dict], model: str, rho: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actual = [r["target_loss"] for r in rows]
    predicted = [r["predicted_cv"] for r in rows]
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.scatter(actual, predicted, s=14)
    lo, hi = min(actual + predicted), max(actual + predicted)
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel("actual target loss")
    ax.set_ylabel("predicted (out of fold)")
    ax.set_title(f"{model}, out-of-fold Spearman {_fmt(rho)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_weights(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = summary["domains"]
    series = {"natural": summary["natural"], "uniform": {d: 1 / len(domains) for d in domains},
              "proposed": summary["proposed"]}
    fig, ax = plt.subplots(figsize=(max(3.6, 0.9 * len(domains) + 1.5), 3.2))
    width = 0.8 / len(series)
    for i, (name, w) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(domains))], [w[d] for d in domains], width, label=name)
    ax.set_xticks([j + width for j in range(len(domains))], domains, rotation=30, fontsize=8)
    ax.set_ylabel("share of training tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
