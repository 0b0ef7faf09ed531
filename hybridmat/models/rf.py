"""Random-forest baseline on composition features (raw Magpie / Ward 2016 vectors: trees need no scaling).

Not a torch :class:`~hybridmat.models.base.PropertyModel`, so not in the model registry; the CLI
dispatches on :data:`RF_NAME`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor

from hybridmat.atomic_io import atomic_write_bytes

RF_NAME = "rf"
_FORMAT = "hybridmat-rf/1"


class RandomForestModel:
    """One scikit-learn :class:`~sklearn.ensemble.RandomForestRegressor` per target.

    Each target gets its own forest, fitted on the rows where that label is present. One multi-output
    forest would need the same rows for every target, and its shared splits would be chosen mostly by
    the target with the largest variance (the criterion sums squared errors over outputs).

    Defaults: ``n_estimators=300`` (test error of a forest flattens well before that on Matbench-size
    data), ``max_features=1.0`` (scikit-learn's regression default: every feature at every split),
    ``min_samples_leaf=1``, ``n_jobs=-1`` (all cores), ``random_state=0`` (target ``t`` uses
    ``random_state + t``, so results are reproducible and forests differ between targets).

    Shapes: ``X`` (n, F); ``Y`` (n, T) or (n,), NaN = missing label; predictions (n, T).
    """

    def __init__(
        self,
        n_estimators: int = 300,
        max_features: float | str | None = 1.0,
        min_samples_leaf: int = 1,
        n_jobs: int | None = -1,
        random_state: int = 0,
    ) -> None:
        self.config: dict[str, Any] = {
            "n_estimators": n_estimators, "max_features": max_features, "min_samples_leaf": min_samples_leaf,
            "n_jobs": n_jobs, "random_state": random_state,
        }
        self.forests: list[RandomForestRegressor] = []

    @property
    def n_targets(self) -> int:
        return len(self.forests)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> RandomForestModel:
        """Fit one forest per column of ``Y``, each on the rows where that column is not NaN."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or X.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"expected X (n, F) and Y (n, T) or (n,), got {X.shape} and {Y.shape}")
        forests = []
        for t in range(Y.shape[1]):
            labelled = ~np.isnan(Y[:, t])
            if not labelled.any():
                raise ValueError(f"target column {t} has no labels: drop it or add labelled rows")
            params = {**self.config, "random_state": self.config["random_state"] + t}
            forests.append(RandomForestRegressor(**params).fit(X[labelled], Y[labelled, t]))
        self.forests = forests
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Mean prediction of the trees, ``(n, T)``."""
        self._check_fitted()
        return np.stack([forest.predict(X) for forest in self.forests], axis=1)

    def predict_std(self, X: np.ndarray) -> np.ndarray:
        """Standard deviation of the per-tree predictions, ``(n, T)``.

        A cheap spread, not a calibrated uncertainty (trees share training data, so it is usually too
        small); calibrate it on validation data before using it as an error bar. Memory stays O(n):
        trees are accumulated one by one.
        """
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)  # the dtype trees split on
        out = np.empty((len(X), self.n_targets))
        for t, forest in enumerate(self.forests):
            total = np.zeros(len(X))
            total_sq = np.zeros(len(X))
            for tree in forest.estimators_:
                value = tree.predict(X)
                total += value
                total_sq += value * value
            mean = total / len(forest.estimators_)
            out[:, t] = np.sqrt(np.maximum(total_sq / len(forest.estimators_) - mean * mean, 0.0))
        return out

    def save(self, path: str | Path) -> None:
        """Write config and forests to one joblib file.

        Loading it runs pickle: treat RF files as trusted artefacts, like code (torch checkpoints are
        loaded with ``weights_only=True``; scikit-learn has no equivalent, and ``skops`` is not a
        dependency).
        """
        self._check_fitted()
        buffer = io.BytesIO()
        joblib.dump({"format": _FORMAT, "sklearn": sklearn.__version__, "config": self.config,
                     "forests": self.forests}, buffer, compress=3)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> RandomForestModel:
        """Read a file written by :meth:`save` (trusted files only: this unpickles)."""
        state = joblib.load(Path(path))
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a hybridmat random-forest file ({_FORMAT})")
        model = cls(**state["config"])
        model.forests = state["forests"]
        return model

    def _check_fitted(self) -> None:
        if not self.forests:
            raise RuntimeError("the random forest is not fitted: call fit(X, Y) first")
