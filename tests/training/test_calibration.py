"""Split-conformal calibration: coverage on fresh data, domain bins, serialisation, reliability measures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hybridmat.training.calibration import (
    LEVELS,
    MIN_BIN_ROWS,
    ONE_SIGMA,
    EnsembleCalibration,
    TargetCalibration,
    conformal_quantile,
    coverage,
    fit_target_calibration,
    miscalibration_area,
    reliability_curve,
)


def _heavy_tailed(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels whose errors are 3x the reported spread and Student-t distributed (like an overconfident ensemble)."""
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.05, 0.5, n)
    mean = rng.normal(0, 1, n)
    return mean + 3 * std * rng.standard_t(3, n), mean, std


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1.0, 10.0)  # n = 9: the 90 % quantile is the ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(scores, 0.9) == 9.0
    assert conformal_quantile(scores, 0.5) == 5.0
    assert conformal_quantile(scores, 0.95) == np.inf  # ceil(10 * 0.95) = 10 > n


def test_calibrated_intervals_cover_fresh_data_that_raw_spread_misses() -> None:
    y, mean, std = _heavy_tailed(4000, seed=0)
    calibration = fit_target_calibration("e_form", y, mean, std)
    y_new, mean_new, std_new = _heavy_tailed(20000, seed=1)
    assert coverage(y_new, mean_new - std_new, mean_new + std_new) < 0.4
    for level in (ONE_SIGMA, 0.9, 0.95):
        lo, hi = calibration.interval(mean_new, std_new, level)
        assert coverage(y_new, lo, hi) == pytest.approx(level, abs=0.02)
    half = calibration.half_width(std_new, 0.9)
    assert np.all(np.diff(half[np.argsort(std_new)]) >= -1e-12), "intervals must grow with the spread"


def test_domain_bins_never_narrow_further_out_and_use_their_own_quantiles() -> None:
    y, mean, std = _heavy_tailed(3000, seed=2)
    score = np.linspace(0, 1, 3000)
    y = np.where(score > 0.8, mean + 4 * (y - mean), y)  # rows beyond the threshold err four times more
    calibration = fit_target_calibration("band_gap", y, mean, std, score, (0.8,))
    assert calibration.bin_counts == (2400, 600)
    inside, outside = calibration.half_width(np.array([0.1, 0.1]), 0.9, np.array([0.5, 0.9]))
    assert outside == pytest.approx(4 * inside, rel=0.25)
    # errors that shrink further out still never narrow the outer bin's interval
    shrunk = np.where(score > 0.8, mean + 0.25 * (y - mean), y)
    guarded = fit_target_calibration("band_gap", shrunk, mean, std, score, (0.8,))
    assert np.all(np.asarray(guarded.quantiles[1]) >= np.asarray(guarded.quantiles[0]))


def test_too_few_rows_per_bin_is_refused() -> None:
    y, mean, std = _heavy_tailed(MIN_BIN_ROWS + 50, seed=3)
    with pytest.raises(ValueError, match="bins hold"):
        fit_target_calibration("e_form", y, mean, std, np.linspace(0, 1, len(y)), (0.9,))


def test_round_trip_through_json_and_missing_target() -> None:
    y, mean, std = _heavy_tailed(500, seed=4)
    calibration = EnsembleCalibration((fit_target_calibration("e_form", y, mean, std),), fitted_on="val")
    loaded = EnsembleCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert loaded == calibration
    assert isinstance(loaded["e_form"], TargetCalibration)
    with pytest.raises(KeyError, match="band_gap"):
        loaded["band_gap"]


def test_reliability_curve_and_miscalibration_area() -> None:
    y, mean, std = _heavy_tailed(4000, seed=5)
    calibration = fit_target_calibration("e_form", y, mean, std)
    expected, observed = reliability_curve(calibration, *_heavy_tailed(8000, seed=6))
    assert list(expected) == list(LEVELS)
    assert miscalibration_area(expected, observed) < 0.02
    assert miscalibration_area(expected, expected) == 0.0
    assert miscalibration_area(np.array([0.5]), np.array([0.0])) == pytest.approx(0.25)
