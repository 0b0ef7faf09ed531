"""Checkpoints hold only plain values, rebuild the model by name and predict identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from hybridmat.training.checkpoint import load_checkpoint, predict, save_checkpoint
from hybridmat.training.trainer import TrainConfig, train_model
from tests.training.tiny_model import NAME, SETTINGS, TARGETS, rocksalt_dataset, split, tiny_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a TrainResult and its directory
    directory = tmp_path_factory.mktemp("run")
    train, val = split(rocksalt_dataset(60), 20)
    config = TrainConfig(epochs=3, batch_size=16, device="cpu", num_threads=1, checkpoint_dir=str(directory),
                         loss_weighting="uncertainty")  # the default loss: MultiTaskLoss
    result = train_model(tiny_model(), train, val, config, featurizer_settings=SETTINGS.as_dict())
    return result, val


def test_round_trip_predicts_identically(trained, tmp_path: Path) -> None:  # noqa: ANN001
    result, val = trained
    path = save_checkpoint(tmp_path / "model.pt", result.model, result.normalizer, {"val_mae": 0.1},
                           {"note": "test", "array": np.arange(3)}, featurizer_settings=SETTINGS.as_dict())
    model, normalizer, meta = load_checkpoint(path)
    expected = predict(result.model, result.normalizer, val)
    assert expected.shape == (20, 2) and expected.dtype == np.float32
    np.testing.assert_array_equal(predict(model, normalizer, val), expected)
    assert meta["name"] == NAME and meta["target_names"] == list(TARGETS)
    assert meta["featurizer_settings"] == SETTINGS.as_dict() and meta["metrics"] == {"val_mae": 0.1}
    assert torch.equal(meta["extra"]["array"], torch.arange(3)) and not model.training


def test_loads_with_weights_only(trained) -> None:  # noqa: ANN001
    result, _ = trained
    state = torch.load(result.checkpoint, weights_only=True)
    assert {"format", "format_version", "hybridmat_version", "name", "config", "state_dict", "normalizer",
            "target_names", "featurizer_settings", "metrics", "extra"} <= set(state)
    assert state["config"] == result.model.config
    log_vars = state["extra"]["loss_state"]["log_vars"]  # the learned loss weights: optimised and saved
    assert torch.equal(log_vars, result.loss.log_vars.detach()) and log_vars.abs().min() > 0
    assert state["metrics"]["val_mae"] == pytest.approx(result.best_val_mae)


def test_predict_matches_the_model_on_pyg_batches(trained) -> None:  # noqa: ANN001
    result, val = trained
    with torch.inference_mode():
        raw = result.model(Batch.from_data_list([val[i] for i in range(len(val))]))
    reference = result.normalizer.denormalize(raw).numpy()
    fast = predict(result.model, result.normalizer, val, batch_size=7)
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-6)


def test_only_plain_values(trained, tmp_path: Path) -> None:  # noqa: ANN001
    result, _ = trained
    with pytest.raises(TypeError, match=r"extra\.bad is a PosixPath"):
        save_checkpoint(tmp_path / "x.pt", result.model, result.normalizer, extra={"bad": tmp_path})
    assert not (tmp_path / "x.pt").exists()
