"""The pure mixture search: Dirichlet sampling, KL, caps, regression choice and the proposal."""
from __future__ import annotations

import numpy as np
import pytest

from curate.core import CurateError
from curate.mixture import search


def test_dirichlet_mixtures_are_seeded_and_centred_on_the_natural_distribution():
    natural = np.array([0.5, 0.3, 0.2])
    a = search.dirichlet_mixtures(natural, 4000, 1.0, seed=3)
    assert np.allclose(a.sum(axis=1), 1) and np.array_equal(a, search.dirichlet_mixtures(natural, 4000, 1.0, seed=3))
    assert np.allclose(a.mean(axis=0), natural, atol=0.02)
    assert a.std(axis=0).mean() > search.dirichlet_mixtures(natural, 4000, 10.0, seed=3).std(axis=0).mean()


def test_kl_and_feasibility():
    p = np.array([0.5, 0.5])
    assert search.kl_divergence(p, p)[0] == 0
    assert search.kl_divergence(np.array([1.0, 0.0]), p)[0] == pytest.approx(np.log(2))
    ceiling = search.max_weights(np.array([100, 1000]), np.array([2.0, 1.0]), budget=400)  # [0.5, 2.5]
    w = np.array([[0.4, 0.6], [0.6, 0.4], [0.1, 0.9]])
    assert search.feasible(w, ceiling, p, None).tolist() == [True, False, True]
    assert search.feasible(w, ceiling, p, 0.1).tolist() == [True, False, False]


def test_cross_validation_prefers_the_linear_model_on_a_linear_response():
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(3), size=24)
    y = x @ np.array([3.0, 4.0, 5.0])
    fits = search.choose_regression(x, y, ("linear", "lightgbm"), folds=4, seed=0)
    assert fits[0].name == "linear" and fits[0].cv_mse < 1e-12 and fits[0].cv_spearman == pytest.approx(1.0)
    assert fits[1].name == "lightgbm" and fits[1].cv_mse > fits[0].cv_mse


def test_proposal_moves_to_the_best_domain_within_caps_and_kl():
    natural = np.array([0.6, 0.3, 0.1])
    ceiling = np.array([1.0, 1.0, 0.3])

    def predict(w):
        return np.atleast_2d(w) @ np.array([5.0, 5.0, 4.0])  # domain 2 lowers the loss

    w, info = search.propose(predict, natural, ceiling, None, candidates=4000, top_k=20, seed=0)
    assert 0.25 < w[2] <= 0.3 + 1e-9 and info["feasible"] < info["candidates"]
    bounded, info = search.propose(predict, natural, ceiling, 0.05, candidates=4000, top_k=20, seed=0)
    assert search.kl_divergence(bounded, natural)[0] <= 0.05 and 0.1 < bounded[2] < w[2]
    with pytest.raises(CurateError, match="no candidate mixture satisfies"):
        search.propose(predict, natural, np.array([0.1, 0.1, 0.1]), None, candidates=100, top_k=5, seed=0)
