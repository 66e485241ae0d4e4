"""The mixture search, pure numpy: Dirichlet proposals around the natural distribution, the
weights → target-loss regression (linear and LightGBM, chosen by cross-validation) and the
constrained proposal (RegMix, Liu et al. 2024: regress on proxy runs, average the top
predicted mixtures; Olmix: a repetition cap per domain and a KL bound to the natural mix)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from curate.core import CurateError

EPS = 1e-12


def natural_weights(tokens: np.ndarray) -> np.ndarray:
    """Each domain's share of the pool's tokens."""
    tokens = np.asarray(tokens, dtype=np.float64)
    return tokens / tokens.sum()


def max_weights(tokens: np.ndarray, caps: np.ndarray, budget: int) -> np.ndarray:
    """The largest share of ``budget`` each domain can take without exceeding its repetition cap."""
    return np.asarray(tokens, np.float64) * np.asarray(caps, np.float64) / float(budget)


def kl_divergence(w: np.ndarray, p: np.ndarray) -> np.ndarray:
    """KL(w || p) in nats, row-wise (0 · log 0 = 0)."""
    w = np.atleast_2d(w)
    return np.where(w > 0, w * np.log(np.maximum(w, EPS) / np.maximum(p, EPS)), 0.0).sum(axis=1)


def feasible(w: np.ndarray, ceiling: np.ndarray, natural: np.ndarray, kl_bound: float | None) -> np.ndarray:
    """Rows of ``w`` within every domain's cap and (when given) the KL bound."""
    ok = (np.atleast_2d(w) <= ceiling + 1e-9).all(axis=1)
    return ok if kl_bound is None else ok & (kl_divergence(w, natural) <= kl_bound + 1e-12)


def dirichlet_mixtures(natural: np.ndarray, n: int, concentration: float, seed: int) -> np.ndarray:
    """``n`` mixtures from Dirichlet(concentration · K · natural): centred on the natural
    distribution, spread by ``concentration`` (smaller: more varied)."""
    rng = np.random.default_rng(seed)
    alpha = np.maximum(concentration * len(natural) * natural, 1e-3)
    return rng.dirichlet(alpha, size=n)


# --------------------------------------------------------------------------- regression

@dataclass
class Fit:
    name: str
    predict: Callable[[np.ndarray], np.ndarray]
    cv_mse: float
    cv_spearman: float
    cv_predictions: np.ndarray


def fit_linear(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Least squares on the weights (they sum to one, so no separate intercept; RegMix's linear model)."""
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return lambda z: np.atleast_2d(z) @ coef


def fit_lightgbm(x: np.ndarray, y: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """A small, deterministic LightGBM regressor (RegMix's default model), sized for few proxies."""
    try:
        import lightgbm as lgb
    except ImportError:
        raise CurateError("regression model lightgbm needs `pip install curate[mixture]` "
                          "(or set regression.models: [linear])") from None
    model = lgb.LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=7,
                              min_child_samples=max(2, len(y) // 8), min_data_in_bin=1, subsample=1.0,
                              random_state=seed, deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
    model.fit(x, y)
    return lambda z: model.predict(np.atleast_2d(z))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    import pandas as pd

    value = pd.Series(a).corr(pd.Series(b), method="spearman")
    return float(value) if value == value else float("nan")


def cross_validate(name: str, x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> Fit:
    """K-fold out-of-fold predictions (folds by a seeded permutation); the final model on all rows."""
    fit = (lambda a, b: fit_linear(a, b)) if name == "linear" else (lambda a, b: fit_lightgbm(a, b, seed))
    order = np.random.default_rng(seed).permutation(len(y))
    predicted = np.empty(len(y))
    for held in np.array_split(order, min(folds, len(y))):
        train = np.setdiff1d(order, held)
        predicted[held] = fit(x[train], y[train])(x[held])
    mse = float(np.mean((predicted - y) ** 2))
    return Fit(name, fit(x, y), mse, spearman(predicted, y), predicted)


def choose_regression(x: np.ndarray, y: np.ndarray, models: tuple[str, ...], folds: int, seed: int) -> list[Fit]:
    """Every model cross-validated, best (lowest out-of-fold MSE) first."""
    fits = [cross_validate(m, x, y, folds, seed) for m in models]
    return sorted(fits, key=lambda f: (f.cv_mse, f.name))


# --------------------------------------------------------------------------- proposal

def propose(predict: Callable[[np.ndarray], np.ndarray], natural: np.ndarray, ceiling: np.ndarray,
            kl_bound: float | None, *, candidates: int, top_k: int, seed: int) -> tuple[np.ndarray, dict]:
    """The mean of the ``top_k`` feasible candidates with the lowest predicted loss (RegMix).

    Candidates are Dirichlet draws around the natural distribution at several spreads, plus
    each domain's largest feasible share. Caps and the KL bound are convex, so the mean of
    feasible candidates is feasible too.
    """
    rng = np.random.default_rng(seed)
    spreads = (0.1, 0.3, 1.0, 3.0)
    per = max(1, candidates // len(spreads))
    alpha = [np.maximum(s * len(natural) * natural, 1e-3) for s in spreads]
    pool = np.vstack([rng.dirichlet(a, size=per) for a in alpha] + [natural[None, :]])
    ok = feasible(pool, ceiling, natural, kl_bound)
    if not ok.any():
        raise CurateError("no candidate mixture satisfies the repetition caps and kl_bound; "
                          "raise max_epochs/caps or kl_bound, or lower token_budget")
    chosen = pool[ok]
    predicted = predict(chosen)
    best = np.argsort(predicted, kind="stable")[:top_k]
    w = chosen[best].mean(axis=0)
    w = w / w.sum()
    return w, {"candidates": int(len(pool)), "feasible": int(ok.sum()), "averaged": int(len(best)),
               "predicted_loss": float(predict(w[None, :])[0]),
               "kl_to_natural": float(kl_divergence(w, natural)[0])}
