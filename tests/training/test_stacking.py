"""Member weights fitted on validation predictions: convex, MAE-minimising, and the spread they imply."""

from __future__ import annotations

import numpy as np
import pytest

from hybridmat.training.stacking import MemberWeights, combine, fit_member_weights


def test_weights_recover_the_mixture_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    members = rng.normal(size=(3, 500))
    weights = fit_member_weights(members, 0.7 * members[0] + 0.3 * members[1])
    np.testing.assert_allclose(weights, [0.7, 0.3, 0.0], atol=1e-6)


def test_the_stacked_mean_is_no_worse_than_any_member_or_the_equal_mean_on_its_rows() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=2000)
    good = y + rng.laplace(scale=0.1, size=(2, 2000))
    poor = y + rng.laplace(scale=0.4, size=2000) + 0.2  # biased and noisy: an under-trained member
    members = np.vstack([good, poor])
    y_with_gaps = np.where(np.arange(2000) % 10 == 0, np.nan, y)  # unlabelled rows are skipped
    weights = fit_member_weights(members, y_with_gaps)
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0) and weights[2] < 0.15

    known = np.isfinite(y_with_gaps)
    def mae(prediction: np.ndarray) -> float:
        return float(np.mean(np.abs(prediction[known] - y[known])))
    stacked = mae(weights @ members)
    assert stacked <= min(mae(m) for m in members) + 1e-9 and stacked <= mae(members.mean(axis=0)) + 1e-9


def test_combine_weights_the_mean_and_the_spread() -> None:
    predictions = np.array([[[1.0, 10.0]], [[3.0, 20.0]], [[8.0, 60.0]]])  # 3 members, 1 row, 2 targets
    mean, std = combine(predictions)
    np.testing.assert_allclose(mean, [[4.0, 30.0]])
    np.testing.assert_allclose(std, predictions.std(axis=0))
    weights = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 1.0]])
    mean, std = combine(predictions, weights)
    np.testing.assert_allclose(mean, [[2.0, 60.0]])
    np.testing.assert_allclose(std, [[1.0, 0.0]])  # a member without weight adds nothing to the spread


def test_member_weights_round_trip_and_refuse_another_ensemble() -> None:
    rng = np.random.default_rng(2)
    predictions = rng.normal(size=(2, 300, 2))
    y = predictions.mean(axis=0)
    weights = MemberWeights.fit(predictions, y, ["e_form", "band_gap"], fitted_on="table?split=full/val")
    again = MemberWeights.from_dict(weights.to_dict())
    assert again == weights and again.fitted_on == "table?split=full/val"
    np.testing.assert_allclose(weights.matrix(["band_gap", "e_form"], 2), [[0.5, 0.5], [0.5, 0.5]], atol=1e-6)
    with pytest.raises(ValueError, match="for 2 members, the ensemble has 3"):
        weights.matrix(["e_form"], 3)
    with pytest.raises(ValueError, match="no \\['gap'\\]"):
        weights.matrix(["gap"], 2)
