"""Random-forest baseline: shapes, per-target label masking, spread, save/load."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest

from hybridmat.models.base import model_class
from hybridmat.models.rf import FILE, RandomForestModel, UntrustedModelFile


def data(n: int = 60, n_features: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, n_features))
    Y = np.stack([X[:, 0] + 0.1 * rng.normal(size=n), 3 * X[:, 1] ** 2], axis=1)
    return X, Y


def small(**kwargs: object) -> RandomForestModel:
    return RandomForestModel(n_estimators=20, n_jobs=1, **kwargs)


def test_fit_predict_shapes() -> None:
    X, Y = data()
    model = small().fit(X, Y)
    assert model_class("rf") is RandomForestModel and model.category == "composition" and model.n_targets == 2
    assert model.predict(X[:7]).shape == (7, 2)
    assert small().fit(X, Y[:, 0]).predict(X).shape == (60, 1)
    std = model.predict_std(X[:7])
    assert std.shape == (7, 2) and (std >= 0).all() and std.max() > 0
    per_tree = np.stack([tree.predict(X[:7].astype(np.float32)) for tree in model.forests[1].estimators_])
    np.testing.assert_allclose(std[:, 1], per_tree.std(axis=0), rtol=1e-6, atol=1e-9)


def test_defaults_are_documented_values() -> None:
    assert RandomForestModel().config == {
        "n_estimators": 300, "max_features": 1.0, "min_samples_leaf": 1, "n_jobs": -1, "random_state": 0,
    }


def test_nan_labels_are_masked_per_target() -> None:
    X, Y = data()
    Y_missing = Y.copy()
    Y_missing[::3, 1] = np.nan
    model = small().fit(X, Y_missing)
    assert np.isfinite(model.predict(X)).all()
    # target 0 is fully labelled: same forest as without the NaNs; target 1 = a forest on its labelled rows
    np.testing.assert_array_equal(model.predict(X)[:, 0], small().fit(X, Y).predict(X)[:, 0])
    labelled = ~np.isnan(Y_missing[:, 1])
    alone = RandomForestModel(n_estimators=20, n_jobs=1, random_state=1).fit(X[labelled], Y[labelled, 1])
    np.testing.assert_array_equal(model.predict(X)[:, 1], alone.predict(X)[:, 0])


def test_unlabelled_target_is_an_error() -> None:
    X, Y = data()
    Y[:, 1] = np.nan
    with pytest.raises(ValueError, match="column 1 has no labels"):
        small().fit(X, Y)


def test_predict_before_fit_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        small().predict(np.zeros((1, 5)))


def test_save_load_round_trip(tmp_path: Path) -> None:
    X, Y = data()
    model = small(random_state=7).fit(X, Y)
    model.save(tmp_path / FILE)
    assert zipfile.is_zipfile(tmp_path / FILE)  # skops, not a pickle
    loaded = RandomForestModel.load(tmp_path / FILE)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_std(X), model.predict_std(X))


class _WritesMarker:
    """Unpickling this writes a marker file: what a crafted model file could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_pickle_payload_does_not_run_without_trust(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    joblib.dump({"format": "hybridmat-rf/1", "payload": _WritesMarker(marker)}, tmp_path / "rf.joblib")
    with pytest.raises(UntrustedModelFile, match="--trust-pickle"):
        RandomForestModel.load(tmp_path / "rf.joblib")
    assert not marker.exists()
    with pytest.raises(UntrustedModelFile):  # a renamed pickle is refused just the same
        (tmp_path / FILE).write_bytes(pickle.dumps(_WritesMarker(marker)))
        RandomForestModel.load(tmp_path / FILE)
    assert not marker.exists()


def test_legacy_joblib_loads_behind_trust_pickle(tmp_path: Path) -> None:
    X, Y = data()
    model = small().fit(X, Y)
    joblib.dump({"format": "hybridmat-rf/1", "config": model.config, "forests": model.forests}, tmp_path / "rf.joblib")
    loaded = RandomForestModel.load(tmp_path / "rf.joblib", trust_pickle=True)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_skops_file_with_untrusted_type_is_refused(tmp_path: Path) -> None:
    import skops.io

    (tmp_path / FILE).write_bytes(skops.io.dumps({"format": "hybridmat-rf/1", "x": _WritesMarker(tmp_path / "m")}))
    with pytest.raises(UntrustedModelFile, match="trusted list"):
        RandomForestModel.load(tmp_path / FILE)


def test_load_rejects_other_files(tmp_path: Path) -> None:
    joblib.dump({"something": "else"}, tmp_path / "other.joblib")
    with pytest.raises(ValueError, match="not a hybridmat random-forest file"):
        RandomForestModel.load(tmp_path / "other.joblib", trust_pickle=True)
