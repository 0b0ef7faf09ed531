"""``bench calibration``'s per-target figures: coverage, sharpness and the table that prints them."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from hybridmat.bench.calibration import results_table, target_figures
from hybridmat.training.calibration import INTERVAL_LEVEL, fit_target_calibration


def test_figures_measure_coverage_and_width_of_the_calibrated_intervals() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    mean, std = rng.normal(size=n), rng.uniform(0.1, 0.3, n)
    y = mean + 2.0 * std * rng.normal(size=n)  # the raw spread is half the true one
    calibration = fit_target_calibration("e_form", y[: n // 2], mean[: n // 2], std[: n // 2])
    test = slice(n // 2, None)
    scores, in_domain = np.zeros(n // 2), np.ones(n // 2, dtype=bool)
    figures = target_figures(calibration, y[test], mean[test], std[test], scores, in_domain)
    assert figures["raw_1std"] < 0.45 and abs(figures["coverage_90"] - 0.90) < 0.03
    lo, hi = calibration.interval(mean[test], std[test], INTERVAL_LEVEL)
    assert figures["width_90"] == np.mean(hi - lo) and figures["width_68"] < figures["width_90"] < figures["width_95"]

    domain = {"test_out_of_domain": 0.0, "scores_per_second": 1e5, "castelli_rows": 10, "castelli_out_of_domain": 1.0,
              "auroc_castelli": 0.9, "rejected_rows": 5, "rejected_out_of_domain": 0.8, "auroc_rejected": 0.7}
    console = Console(width=200, record=True)
    console.print(results_table({"targets": {"e_form": figures}, "domain": domain}, "calibration"))
    text = console.export_text()
    assert "mean width" in text and f"{figures['width_90']:.3f}" in text
