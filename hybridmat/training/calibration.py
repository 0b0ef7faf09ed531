"""Calibrated intervals from an ensemble's spread: split-conformal quantiles of normalised residuals.

The choice. On held-out MP data the raw spread σ of the shipped ensemble is too small and its errors are heavy
tailed (±1σ covers about a third of the errors, ±2σ about half), so one variance-scaling factor cannot fix the
68 % and the 95 % interval at once, and isotonic recalibration (Kuleshov et al., ICML 2018) still needs a
distribution per prediction. Split-conformal prediction with the normalised score ``|y - μ| / σ̃`` (Lei et al.,
JASA 2018; Angelopoulos & Bates, arXiv:2107.07511) needs neither: the ``⌈(n+1)p⌉``-th smallest score ``q_p`` on
the n validation rows makes ``μ ± q_p σ̃`` cover a fraction p of new rows from the same distribution, whatever the
error distribution, and the interval still scales with each row's spread. ``σ̃ = max(σ, σ_floor)`` (σ_floor: a
low quantile of the validation spreads) keeps intervals from collapsing where the members happen to agree.

Scores can be split into bins of the domain score (Mondrian conformal prediction, Vovk et al. 2005), each bin with
its own quantiles; the fitting workflow uses two, in and beyond the domain threshold. A bin's quantiles are never
below the previous bin's, so a row further from the training data never gets a narrower interval than one
closer to it (on MP's own test split the errors hardly grow with the domain score, so the guard, not the fit,
is what widens them; for truly foreign chemistry no interval is guaranteed and the row is flagged instead).
The calibrated ``<t>_std`` is the half width of the
68.27 % interval, so ``±1`` calibrated std covers 68 % as for a Gaussian and LCB/UCB with kappa = 1 are
one-sided 84 % bounds. Fitted on validation predictions only; measured on test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Coverage of ±1 standard deviation of a Gaussian: the calibrated std is the half width of this interval.
ONE_SIGMA = 0.6827
#: The interval reported as ``<t>_lo``/``<t>_hi``.
INTERVAL_LEVEL = 0.90
#: Levels whose quantiles are stored (a grid for reliability diagrams plus the reported ones).
LEVELS = tuple(sorted({*(round(p, 2) for p in np.arange(0.05, 1.0, 0.05)), ONE_SIGMA, 0.99}))
#: Quantile of the validation spreads used as σ_floor.
FLOOR_QUANTILE = 0.05
#: Fewest validation rows per bin: ``⌈(n+1)·0.99⌉ <= n`` needs n >= 99, so every stored quantile is finite.
MIN_BIN_ROWS = 100


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``⌈(n+1)·level⌉``-th smallest score (finite-sample split-conformal quantile; inf when n is too small)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * level)
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


@dataclass(frozen=True)
class TargetCalibration:
    """One target's calibration: σ_floor, domain-score bin edges and per-bin quantiles ``quantiles[bin][level]``."""

    target: str
    sigma_floor: float
    bin_edges: tuple[float, ...]
    quantiles: tuple[tuple[float, ...], ...]
    bin_counts: tuple[int, ...]

    def multiplier(self, level: float, domain_score: np.ndarray | None, n: int) -> np.ndarray:
        """``(n,)`` half width of the ``level`` interval in units of σ̃ (interpolated on the stored levels)."""
        bins = np.zeros(n, dtype=np.int64) if domain_score is None or not self.bin_edges else \
            np.searchsorted(np.asarray(self.bin_edges), np.asarray(domain_score, dtype=np.float64), side="left")
        per_bin = np.array([np.interp(level, LEVELS, row) for row in self.quantiles])
        return per_bin[bins]

    def interval(self, mean: np.ndarray, std: np.ndarray, level: float,
                 domain_score: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of the central ``level`` interval around ``mean``."""
        half = self.half_width(std, level, domain_score)
        return mean - half, mean + half

    def half_width(self, std: np.ndarray, level: float, domain_score: np.ndarray | None = None) -> np.ndarray:
        """``q_level(bin) · max(std, σ_floor)`` per row."""
        std = np.asarray(std, dtype=np.float64)
        return self.multiplier(level, domain_score, len(std)) * np.maximum(std, self.sigma_floor)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "sigma_floor": self.sigma_floor, "bin_edges": list(self.bin_edges),
                "quantiles": [list(row) for row in self.quantiles], "bin_counts": list(self.bin_counts)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetCalibration:
        return cls(str(data["target"]), float(data["sigma_floor"]), tuple(map(float, data["bin_edges"])),
                   tuple(tuple(map(float, row)) for row in data["quantiles"]), tuple(map(int, data["bin_counts"])))


@dataclass(frozen=True)
class EnsembleCalibration:
    """Per-target calibrations of one ensemble, with what they were fitted on."""

    targets: tuple[TargetCalibration, ...]
    fitted_on: str
    method: str = "split-conformal, normalised residuals |y - mean| / max(std, floor), per domain-score bin"

    def __getitem__(self, target: str) -> TargetCalibration:
        for calibration in self.targets:
            if calibration.target == target:
                return calibration
        raise KeyError(f"no calibration for target {target!r}; calibrated: {[c.target for c in self.targets]}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "fitted_on": self.fitted_on, "levels": list(LEVELS),
                "targets": [c.to_dict() for c in self.targets]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnsembleCalibration:
        if [round(p, 4) for p in data["levels"]] != [round(p, 4) for p in LEVELS]:
            raise ValueError(f"calibration levels {data['levels']} differ from this version's {list(LEVELS)}; "
                             "refit with `hybridmat calibrate`")
        return cls(tuple(TargetCalibration.from_dict(t) for t in data["targets"]), str(data["fitted_on"]),
                   str(data["method"]))


def fit_target_calibration(target: str, y: np.ndarray, mean: np.ndarray, std: np.ndarray,
                           domain_score: np.ndarray | None = None,
                           bin_edges: Sequence[float] = ()) -> TargetCalibration:
    """Conformal quantiles of ``|y - mean| / max(std, σ_floor)`` on validation rows, per domain-score bin
    (``bin_edges`` split the score axis; none: one bin). Rows with a missing label are skipped."""
    y, mean, std = (np.asarray(a, dtype=np.float64) for a in (y, mean, std))
    known = np.isfinite(y) & np.isfinite(mean) & np.isfinite(std)
    if known.sum() < MIN_BIN_ROWS:
        raise ValueError(f"calibrating {target} needs at least {MIN_BIN_ROWS} labelled validation rows, "
                         f"got {int(known.sum())}")
    floor = max(float(np.quantile(std[known], FLOOR_QUANTILE)), 1e-6)
    scores = np.abs(y[known] - mean[known]) / np.maximum(std[known], floor)
    if domain_score is None or not len(bin_edges):
        bins, edges = np.zeros(len(scores), dtype=np.int64), ()
    else:
        edges = tuple(float(e) for e in bin_edges)
        bins = np.searchsorted(np.asarray(edges), np.asarray(domain_score, dtype=np.float64)[known], side="left")
    counts = tuple(int(np.sum(bins == b)) for b in range(len(edges) + 1))
    if min(counts) < MIN_BIN_ROWS:
        raise ValueError(f"calibrating {target}: domain-score bins hold {counts} validation rows; "
                         f"every bin needs at least {MIN_BIN_ROWS} (use fewer bins or a lower domain quantile)")
    per_bin = np.array([[conformal_quantile(scores[bins == b], p) for p in LEVELS] for b in range(len(edges) + 1)])
    quantiles = np.maximum.accumulate(per_bin, axis=0)  # never narrower further from the training data
    return TargetCalibration(target, floor, edges, tuple(map(tuple, quantiles.tolist())), counts)


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Fraction of labelled rows with ``lo <= y <= hi``."""
    y = np.asarray(y, dtype=np.float64)
    known = np.isfinite(y)
    return float(np.mean((y[known] >= lo[known]) & (y[known] <= hi[known]))) if known.any() else float("nan")


def reliability_curve(calibration: TargetCalibration, y: np.ndarray, mean: np.ndarray, std: np.ndarray,
                      domain_score: np.ndarray | None = None,
                      levels: Sequence[float] = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """``(expected, observed)`` coverage of the central intervals at ``levels``."""
    observed = [coverage(y, *calibration.interval(mean, std, p, domain_score)) for p in levels]
    return np.asarray(levels, dtype=np.float64), np.asarray(observed)


def miscalibration_area(expected: np.ndarray, observed: np.ndarray) -> float:
    """Area between the reliability curve and the diagonal on [0, 1] (trapezoids; Tran et al. 2020)."""
    x = np.concatenate([[0.0], expected, [1.0]])
    gap = np.abs(np.concatenate([[0.0], observed - expected, [0.0]]))
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))
