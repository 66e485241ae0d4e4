"""Perplexity-correlation estimators, projections and PreSelect strength (numpy only, fast).

Equality with the authors' package ``perplexity-correlations`` on random and realistically
shaped inputs (90 public LLMs' real errors from the shared tables), planted-structure recovery,
orientation, and the projections' constraints.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from curate.core import CurateError
from curate.pplcorr import estimators as pplcorr
from curate.pplcorr.lossmatrix import read_errors

ref_est = pytest.importorskip("perplexity_correlations.estimation")
ref_proj = pytest.importorskip("perplexity_correlations.projection")

ESTIMATORS = list(pplcorr.ESTIMATORS)


def reference(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference warns on values outside [0, 1]
        return fn(*args)


def realistic_bpb(rng, n_models: int, n_texts: int) -> np.ndarray:
    """bpb ≈ model strength × text difficulty + noise: a shared low-rank structure like real LLM losses."""
    strength = rng.uniform(0.7, 1.3, n_models)[:, None]
    difficulty = rng.lognormal(0.0, 0.3, n_texts)[None, :]
    return strength * difficulty + rng.normal(0, 0.05, (n_models, n_texts))


def real_errors(shared_data) -> np.ndarray:
    errors = read_errors(shared_data / "tables" / "perplexity_correlations_error.csv", "arc_easy")
    return np.array(list(errors.values()))


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("shape", [(2, 3), (7, 50), (40, 2000)])
def test_estimators_equal_reference_on_random_inputs(name, shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    X, y = rng.random(shape), rng.random(shape[0])
    ours, theirs = pplcorr.ESTIMATORS[name](X, y), reference(getattr(ref_est, name), X, y)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_estimators_equal_reference_on_real_errors_with_ties(name, shared_data):
    """Real y (90 models, arc_easy error, with tied errors) and bpb with tied entries."""
    y = real_errors(shared_data)
    assert len(np.unique(y)) < len(y)  # the real vector has ties: a harder case
    rng = np.random.default_rng(1)
    X = np.round(realistic_bpb(rng, len(y), 3000), 2)  # rounding creates ties inside columns
    ours, theirs = pplcorr.ESTIMATORS[name](X, y), reference(getattr(ref_est, name), X, y)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_orientation_larger_means_lower_loss_goes_with_lower_error():
    y = np.linspace(0.2, 0.8, 6)  # model 0 is best (lowest error)
    tracks = y * 2 + 0.5  # loss rises with error
    against = -y * 2 + 3.0  # loss falls as error rises
    X = np.stack([tracks, against], axis=1)
    for name in ESTIMATORS:
        # ``product`` (Plan et al. 2016) assumes centred X and y, as its Gaussian model does.
        Xc, yc = (X - X.mean(axis=0), y - y.mean()) if name == "product" else (X, y)
        est = pplcorr.estimate(Xc, yc, name)
        assert est[0] > 0 > est[1], name
    np.testing.assert_allclose(pplcorr.spearmanr(X, y), [1.0, -1.0])
    np.testing.assert_allclose(pplcorr.predictive_strength(X, y), [1.0, 0.0])


@pytest.mark.parametrize("name", ESTIMATORS)
def test_planted_texts_are_recovered(name):
    """y = f(<w, x> + noise), f monotone, w supported on 10 planted texts of 2000 (Thrush et al.'s model)."""
    rng = np.random.default_rng(7)
    n_models, n_texts, n_planted = 400, 2000, 10
    X = 1.0 + 0.1 * rng.normal(size=(n_models, n_texts))  # bpb-like, independent texts
    planted = rng.choice(n_texts, n_planted, replace=False)
    signal = X[:, planted].sum(axis=1)
    signal = (signal - signal.mean()) / signal.std()
    y = 1 / (1 + np.exp(-2 * (signal + rng.normal(0, 0.3, n_models))))  # monotone link, in (0, 1)
    Xc, yc = (X - X.mean(axis=0), y - y.mean()) if name == "product" else (X, y)
    est = pplcorr.estimate(Xc, yc, name)
    top = np.argsort(-est, kind="stable")[:n_planted]
    recovered = len(set(top) & set(planted)) / n_planted
    assert recovered >= 0.9, f"{name}: recovered {recovered:.2f}"


def test_predictive_strength_counts_agreeing_pairs():
    y = np.array([0.1, 0.2, 0.3, 0.4])
    x = np.array([1.0, 3.0, 2.0, 4.0])  # pairs (2,3) disagree, the other 5 agree
    np.testing.assert_allclose(pplcorr.predictive_strength(x[:, None], y), [5 / 6])
    rng = np.random.default_rng(3)
    X, y = rng.random((30, 500)), rng.random(30)
    np.testing.assert_allclose(pplcorr.predictive_strength(X, y), (1 + pplcorr.sign_sign(X, y)) / 2)


def test_predictive_strength_ignores_pairs_tied_in_error():
    y = np.array([0.1, 0.1, 0.5])
    x = np.array([[5.0], [1.0], [9.0]])  # the tied pair disagrees but does not count
    np.testing.assert_allclose(pplcorr.predictive_strength(x, y), [1.0])
    with pytest.raises(CurateError, match="same benchmark error"):
        pplcorr.predictive_strength(x, np.full(3, 0.2))


def _taus(rng, n, keep_fraction):
    return pplcorr.caps_from_tokens(rng.integers(1, 5000, n), keep_fraction)


@pytest.mark.parametrize("n,keep", [(1, 1.0), (10, 0.5), (5000, 0.05), (5000, 0.9)])
def test_projections_equal_reference(n, keep):
    rng = np.random.default_rng(n)
    est, tau = rng.normal(size=n), _taus(rng, n, keep)
    # The reference computes ``linear`` in float32: compare at float32 resolution.
    np.testing.assert_allclose(pplcorr.linear(est, tau), reference(ref_proj.linear, est, tau), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pplcorr.l2(est, tau), reference(ref_proj.l2, est, tau), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_projections_of_real_shaped_estimates_equal_reference(name, shared_data):
    y = real_errors(shared_data)
    rng = np.random.default_rng(11)
    X = realistic_bpb(rng, len(y), 4000)
    est = pplcorr.estimate(X, y, name)
    tau = _taus(rng, X.shape[1], 0.1)
    np.testing.assert_allclose(pplcorr.l2(est, tau), reference(ref_proj.l2, est, tau), rtol=1e-6, atol=1e-9)
    ours, theirs = pplcorr.linear(est, tau), reference(ref_proj.linear, est, tau)
    if len(np.unique(est)) == len(est):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    # With tied estimates the reference's pick among ties follows its unstable sort; ours
    # follows position. Both are optimal: same objective and same mass per estimate value.
    np.testing.assert_allclose(ours @ est, theirs @ est, rtol=1e-5)
    per_value = lambda w: pd.Series(w).groupby(est).sum().to_numpy()  # noqa: E731
    np.testing.assert_allclose(per_value(ours), per_value(theirs), atol=1e-6)


@pytest.mark.parametrize("method", ["linear", "l2"])
def test_keeping_everything_returns_the_caps(method):
    """keep_fraction = 1: Στ = 1 and the only feasible point is w = τ (the reference's
    ``linear`` fails here when float rounding leaves Στ a hair under 1)."""
    rng = np.random.default_rng(2)
    tau = _taus(rng, 5000, 1.0)
    np.testing.assert_allclose(pplcorr.project(rng.normal(size=5000), tau, method), tau, rtol=1e-9, atol=1e-12)


def test_linear_fills_caps_by_rank_and_breaks_ties_by_position():
    est = np.array([0.5, 0.9, 0.5, 0.1, 0.5])
    tau = np.full(5, 0.3)
    w = pplcorr.linear(est, tau)
    np.testing.assert_allclose(w, [0.3, 0.3, 0.3, 0.0, 0.1])
    np.testing.assert_allclose(pplcorr.linear(est * 100 - 7, tau), w)  # rank-only


def test_l2_is_the_euclidean_projection():
    rng = np.random.default_rng(5)
    est, tau = rng.normal(size=200), _taus(rng, 200, 0.2)
    w = pplcorr.l2(est, tau)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert (w >= 0).all() and (w <= tau + 1e-15).all()
    # KKT: free coordinates share one offset c = w − est; zeros have est + c ≤ 0; caps est + c ≥ τ.
    offset = np.median((w - est)[(w > 0) & (w < tau)])
    np.testing.assert_allclose((w - est)[(w > 0) & (w < tau)], offset, atol=1e-12)
    assert (est[w == 0] + offset <= 1e-12).all() and (est[w == tau] + offset >= tau[w == tau] - 1e-12).all()


def test_projections_reject_infeasible_caps():
    with pytest.raises(CurateError, match="sum to"):
        pplcorr.linear(np.zeros(3), np.full(3, 0.1))
    with pytest.raises(CurateError, match="positive"):
        pplcorr.l2(np.zeros(3), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(CurateError, match="keep_fraction"):
        pplcorr.caps_from_tokens([1, 2], 0.0)


def test_bad_inputs_fail_clearly():
    with pytest.raises(CurateError, match="2 models"):
        pplcorr.spearmanr(np.ones((1, 4)), np.ones(1))
    with pytest.raises(CurateError, match="errors"):
        pplcorr.sign(np.ones((3, 4)), np.ones(2))
    with pytest.raises(CurateError, match="finite"):
        pplcorr.product(np.array([[1.0], [np.nan]]), np.ones(2))
    with pytest.raises(CurateError, match="valid: spearmanr"):
        pplcorr.estimate(np.ones((3, 4)), np.ones(3), "pearson")
