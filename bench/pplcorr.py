"""Perplexity-correlation estimators and projections: curate vs the authors' package, one run.

    .venv/bin/python bench/pplcorr.py --models 100 --texts 100000 --repeat 3

X is synthetic bpb with a shared model-strength factor (N models × D texts), y is the real
arc_easy error of the first N public LLMs in ../shared/data/tables (random when absent or N > 89).
Each function runs ``--repeat`` times per implementation, alternating; the best time is
reported (the machine is shared). Results must agree: max |difference| is printed.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from curate.pplcorr import estimators as pplcorr

TABLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tables" / "perplexity_correlations_error.csv"


def errors(n: int, rng) -> tuple[np.ndarray, str]:
    if TABLE.is_file():
        from curate.pplcorr.lossmatrix import read_errors

        real = np.array(list(read_errors(TABLE, "arc_easy").values()))
        if n <= len(real):
            return real[:n], f"real arc_easy error of {n} public LLMs ({TABLE.name})"
    return rng.uniform(0.2, 0.8, n), "uniform random"


def timed(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the reference warns when values leave [0, 1]
    from importlib.metadata import version

    from perplexity_correlations import estimation as ref_est
    from perplexity_correlations import projection as ref_proj

    rng = np.random.default_rng(0)
    y, y_source = errors(args.models, rng)
    X = rng.uniform(0.7, 1.3, (args.models, 1)) * rng.lognormal(0, 0.3, (1, args.texts))
    X += rng.normal(0, 0.05, X.shape)
    print(f"# N={args.models} models, D={args.texts:,} texts; y: {y_source}; numpy {np.__version__}; "
          f"perplexity-correlations {version('perplexity-correlations')}; {platform.machine()}, {os.cpu_count()} CPUs")
    print("| function | curate (s) | reference (s) | speed-up | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    rows = [(name, lambda f=fn: f(X, y), lambda n=name: getattr(ref_est, n)(X, y))
            for name, fn in pplcorr.ESTIMATORS.items()]
    estimate = pplcorr.spearmanr(X, y) + rng.normal(0, 1e-9, args.texts)  # tie-free for an exact comparison
    tau = pplcorr.caps_from_tokens(rng.integers(50, 5000, args.texts), 0.1)
    rows += [(f"projection {name}", lambda n=name: getattr(pplcorr, n)(estimate, tau),
              lambda n=name: getattr(ref_proj, n)(estimate, tau)) for name in ("linear", "l2")]
    for name, ours, theirs in rows:
        t_ours, t_ref = float("inf"), float("inf")
        for _ in range(args.repeat):  # alternate so both see the same machine load
            t, a = timed(ours)
            t_ours = min(t_ours, t)
            t, b = timed(theirs)
            t_ref = min(t_ref, t)
        diff = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
        print(f"| {name} | {t_ours:.3f} | {t_ref:.3f} | {t_ref / t_ours:.1f}× | {diff:.1e} |")


if __name__ == "__main__":
    main()
