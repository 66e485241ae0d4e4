"""Perplexity-correlation estimators and projections, and PreSelect predictive strength.

Thrush, Potts & Hashimoto (2024), "Improving Pretraining Data Using Perplexity Correlations"
(arXiv:2409.05816): across N public LLMs, texts whose bits-per-byte (bpb) rank the models the
way a benchmark does are good pretraining data. Shum et al. (2025), "Predictive Data Selection:
The Data That Predicts Is the Data That Teaches" (PreSelect, arXiv:2503.00808) scores each text
by the fraction of model pairs its loss orders like the benchmark.

Inputs are ``X`` (N models × D texts, bpb) and ``y`` (N benchmark *errors*, 1 − accuracy).
Orientation of every estimate: **larger = lower loss goes with lower error** (the text's loss
moves with the benchmark error), i.e. larger is better data.

All functions are vectorised numpy and give the same numbers as the authors' package
``perplexity-correlations`` (tests assert allclose); ``sign``/``sign_cdf`` are O(N·D) instead of
O(N²·D), ``spearmanr`` sorts each column once instead of twice. Ranks follow the reference:
ties in ranks are broken by position (``np.argsort`` order), not averaged.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from curate.core import CurateError

_D_CHUNK = 4096  # columns per block in the O(N²·D) pairwise loop (keeps blocks in cache)


def _check(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.ndim != 1:
        raise CurateError(f"expected X of shape (models, texts) and y of shape (models,), got {X.shape} and {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise CurateError(f"X has {X.shape[0]} models but y has {y.shape[0]} errors")
    if X.shape[0] < 2:
        raise CurateError("need at least 2 models to correlate losses with benchmark errors")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise CurateError("X and y must be finite (a model scored NaN/inf bits-per-byte?)")
    return X, y


def column_ranks(X: np.ndarray) -> np.ndarray:
    """1-based rank of each entry within its column (ties broken by argsort order, as the reference)."""
    order = np.argsort(X, axis=0)
    # The rank is the inverse permutation of the sort order; sorting a permutation is cheap and
    # faster in numpy than scattering with put_along_axis.
    return np.argsort(order, axis=0) + 1


def _pair_weights(y: np.ndarray) -> np.ndarray:
    """c_k = Σ_i sign(y_k − y_i): the pairwise U-statistic Σ_{i<j} sign(y_j−y_i)(x_j−x_i) equals c·X."""
    return np.sign(y[:, None] - y[None, :]).sum(axis=1)


def _pairs(n: int) -> float:
    return n * (n - 1) / 2


def product(X, y) -> np.ndarray:
    """Plan et al. (2016) single-index estimator: mean over models of y_k · x_k."""
    X, y = _check(X, y)
    return (y @ X) / X.shape[0]


def sign(X, y) -> np.ndarray:
    """Chen & Banerjee (2017): mean over model pairs of sign(y_j − y_i)·(x_j − x_i), in O(N·D)."""
    X, y = _check(X, y)
    return (_pair_weights(y) @ X) / _pairs(X.shape[0])


def sign_cdf(X, y) -> np.ndarray:
    """Thrush et al. (2024): ``sign`` on column-wise empirical CDFs (rank / N) of X."""
    X, y = _check(X, y)
    cdf = column_ranks(X) / X.shape[0]
    return (_pair_weights(y) @ cdf) / _pairs(X.shape[0])


def sign_sign(X, y) -> np.ndarray:
    """Mean over model pairs of sign(y_j − y_i)·sign(x_j − x_i) (a Kendall-tau numerator), O(N²·D)."""
    X, y = _check(X, y)
    n, d = X.shape
    by_error = np.argsort(y, kind="stable")
    Xs, ys = X[by_error], y[by_error]
    # In error order, model i's partners with strictly larger error are a suffix.
    first_larger = np.searchsorted(ys, ys, side="right")
    total = np.zeros(d, dtype=np.int64)
    for lo in range(0, d, _D_CHUNK):
        block = Xs[:, lo:lo + _D_CHUNK]
        acc = total[lo:lo + _D_CHUNK]
        for i in range(n):
            rest = block[first_larger[i]:]
            if rest.shape[0]:
                acc += np.count_nonzero(rest > block[i], axis=0)
                acc -= np.count_nonzero(rest < block[i], axis=0)
    return total / _pairs(n)


def spearmanr(X, y) -> np.ndarray:
    """Thrush et al. (2024): per-column Spearman rank correlation between x (bpb) and y (error)."""
    X, y = _check(X, y)
    n = X.shape[0]
    ry = column_ranks(y[:, None])[:, 0].astype(np.float64)
    rx = column_ranks(X)
    # Both rank vectors are permutations of 1..n, so Σ(ry − rx)² = 2·Σk² − 2·ry·rx.
    sum_sq = n * (n + 1) * (2 * n + 1) / 6
    squared_diff = 2 * sum_sq - 2 * (ry @ rx)
    return 1 - 6 * squared_diff / (n * (n * n - 1))


ESTIMATORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "spearmanr": spearmanr,
    "sign_cdf": sign_cdf,
    "sign_sign": sign_sign,
    "sign": sign,
    "product": product,
}


def estimate(X, y, method: str = "spearmanr") -> np.ndarray:
    """Run the named estimator (``spearmanr`` by default)."""
    if method not in ESTIMATORS:
        raise CurateError(f"unknown estimator '{method}'; valid: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[method](X, y)


# --- projections to a sampling distribution (Thrush et al. 2024, §3.3) -----------------------

def _check_projection(est, tau) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(est, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    if est.ndim != 1 or est.shape != tau.shape:
        raise CurateError(f"estimate and tau must be 1-D of equal length, got {est.shape} and {tau.shape}")
    if not (tau > 0).all():
        raise CurateError("every tau (per-text sampling cap) must be positive; drop texts with no tokens")
    if tau.sum() < 1:
        raise CurateError(f"projection infeasible: caps tau sum to {tau.sum():.4g} < 1 (keep fraction above 1?)")
    return est, tau


def linear(est, tau) -> np.ndarray:
    """Maximise ⟨w, est⟩ s.t. Σw = 1, 0 ≤ w ≤ τ: fill caps in decreasing estimate order (rank-only).

    Ties in the estimate are broken by position (stable sort), so the result is deterministic.
    """
    est, tau = _check_projection(est, tau)
    order = np.argsort(-est, kind="stable")
    caps = tau[order]
    mass_before = np.cumsum(caps) - caps
    weights = np.empty_like(est)
    weights[order] = np.clip(1.0 - mass_before, 0.0, caps)
    return weights


def l2(est, tau) -> np.ndarray:
    """Euclidean projection onto {Σw = 1, 0 ≤ w ≤ τ}: w = clip(est + c, 0, τ) for the offset c with Σw = 1.

    g(c) = Σ clip(est + c, 0, τ) is piecewise linear and nondecreasing; c is found exactly from
    its sorted breakpoints (the reference bisects on c to ``atol``; results agree to that tolerance).
    """
    est, tau = _check_projection(est, tau)
    starts, stops = -est, tau - est  # w_i rises from 0 at c = −est_i and saturates at c = τ_i − est_i
    points = np.concatenate([starts, stops])
    slope_change = np.concatenate([np.ones_like(starts), -np.ones_like(stops)])
    order = np.argsort(points)  # the order among equal breakpoints does not change g
    points, slope_change = points[order], slope_change[order]
    slope_after = np.cumsum(slope_change)
    mass = np.concatenate([[0.0], np.cumsum(slope_after[:-1] * np.diff(points))])  # g at each breakpoint
    # First breakpoint with g ≥ 1 (g at the last one is Στ ≥ 1, up to rounding).
    k = min(int(np.searchsorted(mass, 1.0, side="left")), len(mass) - 1)
    offset = points[k] if k == 0 or mass[k] <= 1.0 else points[k - 1] + (1.0 - mass[k - 1]) / slope_after[k - 1]
    return np.clip(est + offset, 0.0, tau)


PROJECTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"linear": linear, "l2": l2}


def project(est, tau, method: str = "linear") -> np.ndarray:
    """Run the named projection (``linear`` by default)."""
    if method not in PROJECTIONS:
        raise CurateError(f"unknown projection '{method}'; valid: {', '.join(PROJECTIONS)}")
    return PROJECTIONS[method](est, tau)


def caps_from_tokens(tokens, keep_fraction: float) -> np.ndarray:
    """τ_i = token share of text i / keep fraction: never sample a text beyond its own tokens."""
    tokens = np.asarray(tokens, dtype=np.float64)
    if not 0 < keep_fraction <= 1:
        raise CurateError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if (tokens <= 0).any():
        raise CurateError("every text needs a positive token count to get a sampling cap")
    return tokens / tokens.sum() / keep_fraction


# --- PreSelect (Shum et al. 2025) ------------------------------------------------------------

def predictive_strength(X, y) -> np.ndarray:
    """PreSelect S per text: fraction of model pairs whose bpb order agrees with their error order.

    A pair agrees when the model with the lower benchmark error also has the lower loss. Pairs
    tied in error are not counted; a tie in loss counts half. 1.0 = perfectly predictive.
    """
    X, y = _check(X, y)
    comparable = np.count_nonzero(np.sign(y[:, None] - y[None, :])) / 2
    if comparable == 0:
        raise CurateError("all models have the same benchmark error: nothing to correlate")
    return 0.5 + sign_sign(X, y) * _pairs(X.shape[0]) / (2 * comparable)
