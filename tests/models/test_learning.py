"""Every registered model, at a tiny size, learns: on ≤ 200 structures its validation MAE is below the
mean predictor's (the model that always answers the training mean)."""

from __future__ import annotations

import numpy as np
import pytest

from hybridmat.training.checkpoint import predict
from hybridmat.training.ensemble import train_member
from hybridmat.training.metrics import mae
from hybridmat.training.trainer import TrainConfig
from tests.training.tiny_model import rocksalt_dataset, split

TINY = {
    "cgcnn": {"hidden": 16, "n_conv": 2},
    "early_fusion": {"hidden": 16, "n_conv": 2},
    "attention_fusion": {"hidden": 16, "n_conv": 2, "fusion_dim": 16},
    "multitask": {"hidden": 16, "n_conv": 2},
    "alignn": {"hidden": 16, "embedding": 8, "alignn_layers": 1, "gcn_layers": 1},
    "alignn_simple": {"hidden": 16, "embedding": 8, "n_layers": 2},
    "multitask_gat": {"hidden": 16, "n_layers": 2, "heads": 2},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_model_beats_the_mean_predictor(name: str) -> None:
    dataset = rocksalt_dataset(160, line_graph=name == "alignn")
    train, val = split(dataset, 40)
    config = TrainConfig(epochs=30, batch_size=16, lr=5e-3, patience=30, device="cpu", num_threads=1)
    result = train_member(name, TINY[name], train, val, config, seed=0)
    y_train, y_val = dataset.targets[:120].numpy(), dataset.targets[120:].numpy()
    baseline = mae(y_val, np.broadcast_to(np.nanmean(y_train, axis=0), y_val.shape))
    model_mae = mae(y_val, predict(result.model, result.normalizer, val))
    assert np.all(model_mae < baseline), (name, model_mae, baseline)
