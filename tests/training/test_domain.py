"""Domain score: kNN distance in standardised, PCA-projected composition space; threshold; storage without pickle."""

from __future__ import annotations

import io

import numpy as np
import pytest

from hybridmat.training.domain import DomainModel, fit_domain_model


def _clusters(n: int, seed: int) -> np.ndarray:
    """Two clusters in a 20-feature space (one feature constant, like an element absent from the data)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 5, (2, 20))
    points = centers[rng.integers(0, 2, n)] + rng.normal(0, 0.5, (n, 20))
    points[:, 7] = 3.0
    return points


def test_far_compositions_score_higher_and_are_flagged() -> None:
    train, val = _clusters(2000, seed=0), _clusters(500, seed=1)
    model = fit_domain_model(train, "magpie", n_components=6, k=5)
    assert np.isnan(model.threshold) and model.in_domain(np.array([1e9])).all()
    model = model.with_threshold(model.score(val), quantile=0.95)
    far = _clusters(200, seed=2) + 10.0
    assert np.mean(model.in_domain(model.score(val))) == pytest.approx(0.95, abs=0.01)
    assert np.mean(model.in_domain(model.score(far))) < 0.05
    assert model.score(train[:3]).max() < model.score(far).min()


def test_round_trip_through_npz_without_pickle() -> None:
    model = fit_domain_model(_clusters(300, seed=3), "ward2016", n_components=4, k=3, n_reference=100)
    model = model.with_threshold(model.score(_clusters(100, seed=4)))
    assert len(model.reference) == 100
    buffer = io.BytesIO()
    np.savez(buffer, **model.to_dict())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as arrays:
        loaded = DomainModel.from_dict(arrays)
    queries = _clusters(50, seed=5)
    assert loaded.composition == "ward2016" and loaded.k == 3 and loaded.threshold == model.threshold
    np.testing.assert_allclose(loaded.score(queries), model.score(queries), rtol=1e-5)


def test_wrong_feature_width_and_tiny_training_sets_are_refused() -> None:
    model = fit_domain_model(_clusters(50, seed=6), "magpie", n_components=3, k=2)
    with pytest.raises(ValueError, match="expects 20 magpie"):
        model.score(np.zeros((2, 19)))
    assert len(model.score(np.zeros((0, 20)))) == 0
    with pytest.raises(ValueError, match="more than k=5"):
        fit_domain_model(np.zeros((3, 20)), "magpie")
