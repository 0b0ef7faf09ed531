"""Target normalisation: NaN-aware statistics from the training labels, exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridmat.training.normalizer import TargetNormalizer


def test_nan_aware_statistics_and_round_trip() -> None:
    y = torch.tensor([[1.0, np.nan, 5.0], [3.0, 2.0, 5.0], [8.0, np.nan, 5.0]])
    normalizer = TargetNormalizer.fit(y, ["a", "b", "c"])
    assert normalizer.mean.tolist() == pytest.approx([4.0, 2.0, 5.0])
    # b has one label and c no spread: their std is 1
    assert normalizer.std.tolist() == pytest.approx([np.nanstd(y[:, 0].numpy()), 1.0, 1.0])
    z = normalizer.normalize(y)
    assert torch.isnan(z[0, 1]) and torch.allclose(normalizer.denormalize(z)[:, 0], y[:, 0])
    restored = TargetNormalizer.from_state_dict(normalizer.state_dict())
    assert torch.equal(restored.mean, normalizer.mean) and torch.equal(restored.std, normalizer.std)
    assert restored.target_names == ("a", "b", "c")


def test_a_target_without_labels_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\['b'\]"):
        TargetNormalizer.fit(torch.tensor([[1.0, np.nan], [2.0, np.nan]]), ["a", "b"])
