"""Random-forest baseline on composition features (raw Magpie / Ward 2016 vectors: trees need no scaling).

Forests are stored with ``skops.io`` (``rf.skops``), which rebuilds scikit-learn objects from their arrays and
refuses any type outside an explicit trusted list, so a crafted file cannot run code. Files of the old
joblib format (``rf.joblib``) unpickle, i.e. run whatever they contain: they load only with
``trust_pickle=True`` (``hybridmat evaluate --trust-pickle``), for files you made yourself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import sklearn
from pydantic import Field
from sklearn.ensemble import RandomForestRegressor

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.console import UserError
from hybridmat.models.base import Category, PositiveInt, register

FILE = "rf.skops"
#: The pickle-based format of earlier releases, read only behind ``trust_pickle``.
LEGACY_FILE = "rf.joblib"
_FORMAT = "hybridmat-rf/1"
#: Types ``skops.io`` may rebuild beyond its defaults (the forest and tree estimators are trusted by default).
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


class UntrustedModelFile(UserError):
    """A model file that would run code when loaded, or holds types outside the trusted list."""


@register("rf")
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

    name: ClassVar[str]
    category: ClassVar[Category] = "composition"
    needs_line_graph: ClassVar[bool] = False

    def __init__(
        self,
        n_estimators: PositiveInt = 300,
        max_features: PositiveInt | Annotated[float, Field(gt=0, le=1)] | Literal["sqrt", "log2"] | None = 1.0,
        min_samples_leaf: PositiveInt = 1,
        n_jobs: int | None = -1,
        random_state: Annotated[int, Field(ge=0)] = 0,
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
        """Write config and forests to one ``skops.io`` file (no pickle: :meth:`load` cannot run code)."""
        import skops.io

        self._check_fitted()
        state = {"format": _FORMAT, "sklearn": sklearn.__version__, "config": json.dumps(self.config),
                 "forests": self.forests}
        atomic_write_bytes(Path(path), skops.io.dumps(state, compression=8))

    @classmethod
    def load(cls, path: str | Path, trust_pickle: bool = False) -> RandomForestModel:
        """Read a file written by :meth:`save`; types outside :data:`TRUSTED_TYPES` and skops' defaults are
        refused. A legacy joblib file (any other content) is unpickled only with ``trust_pickle``."""
        import skops.io

        path = Path(path)
        data = path.read_bytes()
        if not data.startswith(b"PK"):  # not a skops (zip) file: the legacy joblib format
            return cls._load_pickle(path, trust_pickle)
        untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
        if untrusted:
            raise UntrustedModelFile(f"{path} holds types outside the forest's trusted list: {untrusted}; "
                                     "it was not written by hybridmat, so it is not loaded")
        state = skops.io.loads(data, trusted=TRUSTED_TYPES)
        return cls._from_state(path, state, json_config=True)

    @classmethod
    def _load_pickle(cls, path: Path, trust_pickle: bool) -> RandomForestModel:
        """The legacy joblib format: unpickling runs code, so only with ``trust_pickle``."""
        if not trust_pickle:
            raise UntrustedModelFile(
                f"{path} is not a skops forest file: loading it would unpickle (run code from the file). "
                "If you wrote it yourself with an earlier hybridmat, pass --trust-pickle (trust_pickle=True), "
                "then retrain or re-save it to get the safe format")
        import joblib

        return cls._from_state(path, joblib.load(path), json_config=False)

    @classmethod
    def _from_state(cls, path: Path, state: Any, json_config: bool) -> RandomForestModel:
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a hybridmat random-forest file ({_FORMAT})")
        model = cls(**(json.loads(state["config"]) if json_config else state["config"]))
        model.forests = list(state["forests"])
        return model

    def _check_fitted(self) -> None:
        if not self.forests:
            raise RuntimeError("the random forest is not fitted: call fit(X, Y) first")
