"""Ensembles: members differ by seed; the mean is their average and the std their (ddof=0) spread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridmat.training.checkpoint import predict
from hybridmat.training.ensemble import Ensemble, train_ensemble, train_member
from hybridmat.training.trainer import TrainConfig
from tests.training.tiny_model import NAME, MaskedL1, rocksalt_dataset, split

CONFIG = TrainConfig(epochs=3, batch_size=16, lr=1e-2, device="cpu", num_threads=1, seed=3)


def test_mean_is_the_members_average_and_std_their_spread(tmp_path: Path) -> None:
    train, val = split(rocksalt_dataset(60), 20)
    config = TrainConfig(**{**CONFIG.as_dict(), "checkpoint_dir": str(tmp_path)})
    ensemble, results = train_ensemble(NAME, {"hidden": 8}, train, val, config, n_members=3,
                                       loss_factory=MaskedL1)
    members = [predict(r.model, r.normalizer, val) for r in results]
    mean, std = ensemble.predict(val)
    stacked = np.stack(members).astype(np.float64)
    np.testing.assert_array_equal(mean, stacked.mean(axis=0))
    np.testing.assert_allclose(mean, sum(stacked) / 3, rtol=1e-12)
    np.testing.assert_allclose(std, np.sqrt(((stacked - mean) ** 2).mean(axis=0)), rtol=1e-12)
    assert mean.shape == std.shape == (20, 2) and np.all(std > 0)
    assert ensemble.target_names == ("e_form", "band_gap")

    loaded = Ensemble.from_checkpoints([tmp_path / f"member-{k}" / "best.pt" for k in range(3)])
    np.testing.assert_array_equal(loaded.predict(val)[0], mean)


def test_a_member_is_a_function_of_its_seed() -> None:
    train, val = split(rocksalt_dataset(40), 10)
    a, b = (train_member(NAME, {"hidden": 8}, train, val, CONFIG, seed=11, loss=MaskedL1()) for _ in range(2))
    np.testing.assert_array_equal(predict(a.model, a.normalizer, val), predict(b.model, b.normalizer, val))
    with pytest.raises(ValueError, match="at least 2"):
        train_ensemble(NAME, {}, train, val, CONFIG, n_members=1, loss_factory=MaskedL1)
