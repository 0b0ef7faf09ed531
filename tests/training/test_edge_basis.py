"""A model's edge dimension comes from the featurizer settings, and a model refuses data with another basis."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hybridmat.console import UserError
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.graph import GaussianBasis
from hybridmat.training.checkpoint import (
    check_edge_basis,
    edge_dim_config,
    load_checkpoint,
    predict,
    save_checkpoint,
)
from hybridmat.training.ensemble import train_member
from hybridmat.training.normalizer import TargetNormalizer
from hybridmat.training.trainer import TrainConfig
from tests.training.tiny_model import TARGETS, rocksalt_dataset

SETTINGS = FeaturizerSettings(composition="magpie", cutoff=7.0)  # basis 0-7 Å: 36 centres


def _dataset(settings: FeaturizerSettings, n: int = 12) -> CrystalDataset:
    """``n`` rocksalt cells whose bond lengths are expanded with ``settings``' basis."""
    return CrystalDataset(replace(rocksalt_dataset(n).batch, edge_basis=settings.edge_basis), TARGETS)


def test_edge_dim_only_for_models_that_read_edge_attr() -> None:
    basis = SETTINGS.edge_basis
    assert edge_dim_config("cgcnn", basis) == {"edge_dim": 36}
    assert edge_dim_config("alignn", basis) == {}  # expands bond lengths itself


def test_check_edge_basis_names_both_bases() -> None:
    check_edge_basis(SETTINGS.as_dict(), SETTINGS.edge_basis, "the store")
    check_edge_basis(None, GaussianBasis(), "the store")  # nothing recorded: nothing to compare
    with pytest.raises(UserError, match=r"41 Gaussians over 0-8 Å.*36 Gaussians over 0-7 Å"):
        check_edge_basis(SETTINGS.as_dict(), GaussianBasis(), "the store")
    old = {"composition": "magpie", "cutoff": 7.0, "max_neighbors": 12}  # before the basis was recorded: 0-8 Å
    check_edge_basis(old, GaussianBasis(), "the store")


@pytest.mark.slow
def test_model_built_with_the_settings_basis_refuses_other_data(tmp_path) -> None:  # noqa: ANN001
    train, val = _dataset(SETTINGS, 12), _dataset(SETTINGS, 6)
    config = TrainConfig(epochs=1, batch_size=6, device="cpu", num_threads=1)
    result = train_member("cgcnn", {"hidden": 8, "n_conv": 1, "head_hidden": 8}, train, val, config, 0,
                          featurizer_settings=SETTINGS.as_dict())
    assert result.model.config["edge_dim"] == 36
    path = save_checkpoint(tmp_path / "m.pt", result.model, result.normalizer,
                           featurizer_settings=SETTINGS.as_dict())
    model, normalizer, meta = load_checkpoint(path)
    assert FeaturizerSettings.from_dict(meta["featurizer_settings"]) == SETTINGS
    assert predict(model, normalizer, val).shape == (6, 2)
    with pytest.raises(UserError, match=r"reads 36 edge features.*41 Gaussians over 0-8 Å"):
        predict(model, normalizer, _dataset(FeaturizerSettings(composition="magpie"), 6))
    with pytest.raises(UserError, match="the training set expands bond lengths"):
        train_member("cgcnn", {"hidden": 8}, _dataset(FeaturizerSettings(composition="magpie")), None, config, 0,
                     featurizer_settings=SETTINGS.as_dict())


def test_inconsistent_checkpoint_is_refused(tmp_path) -> None:  # noqa: ANN001
    from hybridmat.models.base import build_model

    model = build_model("cgcnn", n_targets=1, hidden=8, n_conv=1, head_hidden=8)  # 41 edge features
    normalizer = TargetNormalizer.fit(torch.zeros(3, 1), ["e_form"])
    path = save_checkpoint(tmp_path / "m.pt", model, normalizer, featurizer_settings=SETTINGS.as_dict())
    with pytest.raises(UserError, match="reads 41 edge features but its featurizer settings give 36"):
        load_checkpoint(path)
