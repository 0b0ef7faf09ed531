"""The trainer learns, is deterministic on CPU, resumes exactly, and early-stops to the best epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.deterministic

from hybridmat.models.base import build_model
from hybridmat.training.checkpoint import predict
from hybridmat.training.metrics import mae, selection_mae
from hybridmat.training.trainer import LAST, TrainConfig, Trainer, train_model
from tests.training.tiny_model import NAME, TARGETS, MaskedL1, rocksalt_dataset, split, tiny_model

FAST = {"batch_size": 16, "lr": 1e-2, "device": "cpu", "num_threads": 1}


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_beats_the_mean_predictor() -> None:
    dataset = rocksalt_dataset(160)
    train, val = split(dataset, 40)
    config = TrainConfig(epochs=40, patience=10, **FAST)
    result = train_model(tiny_model(), train, val, config, loss=MaskedL1())
    y_train, y_val = dataset.targets[:120].numpy(), dataset.targets[120:].numpy()
    baseline = mae(y_val, np.broadcast_to(np.nanmean(y_train, axis=0), y_val.shape))
    model_mae = mae(y_val, predict(result.model, result.normalizer, val))
    assert np.all(model_mae < 0.5 * baseline), (model_mae, baseline)
    assert result.best_val_mae == pytest.approx(selection_mae(model_mae, result.normalizer.std.numpy()), rel=1e-5)
    assert result.normalizer.target_names == TARGETS


def test_history_and_callback() -> None:
    train, val = split(rocksalt_dataset(60), 20)
    seen: list[tuple[int, dict[str, float]]] = []
    result = train_model(tiny_model(), train, val, TrainConfig(epochs=3, **FAST), loss=MaskedL1(),
                         on_epoch_end=lambda epoch, metrics: seen.append((epoch, metrics)))
    assert [epoch for epoch, _ in seen] == [1, 2, 3] and [m for _, m in seen] == result.history
    keys = {"epoch", "train_loss", "val_mae", "val_mae_e_form", "val_mae_band_gap", "lr", "seconds",
            "structures_per_s"}
    assert all(keys <= set(metrics) for metrics in result.history)
    assert all(m["structures_per_s"] > 0 and np.isfinite(m["val_mae"]) for m in result.history)
    assert not result.stopped_early and result.checkpoint is None


def test_same_seed_same_weights_and_settings_restored() -> None:
    train, val = split(rocksalt_dataset(60), 20)
    settings = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
                torch.utils.deterministic.fill_uninitialized_memory)
    config = TrainConfig(epochs=3, seed=7, **FAST)
    runs = [train_model(tiny_model(seed=1), train, val, config, loss=MaskedL1()) for _ in range(2)]
    _assert_same(_weights(runs[0].model), _weights(runs[1].model))
    other_seed = TrainConfig(epochs=3, seed=8, **FAST)
    other = train_model(tiny_model(seed=1), train, val, other_seed, loss=MaskedL1())
    # the trainer's seed alone (batch order, dropout) changes the result
    assert not torch.equal(other.model.head.weight, runs[0].model.head.weight)
    assert settings == (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
                        torch.utils.deterministic.fill_uninitialized_memory)


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    train, val = split(rocksalt_dataset(60), 20)
    config = TrainConfig(epochs=4, schedule="onecycle", patience=None, **FAST)
    full = train_model(tiny_model(), train, val, config, loss=MaskedL1(learned=True))

    def crash_after_two(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise Crash

    interrupted = TrainConfig(**{**config.as_dict(), "checkpoint_dir": str(tmp_path)})
    with pytest.raises(Crash):
        train_model(tiny_model(), train, val, interrupted, loss=MaskedL1(learned=True),
                    on_epoch_end=crash_after_two)
    state = torch.load(tmp_path / LAST, weights_only=True)  # plain types only
    assert state["epoch"] == 2 and not state["finished"]

    torch.manual_seed(12345)  # a new process has other global RNG states: resume must restore them
    resumed = train_model(tiny_model(seed=99), train, val, interrupted, loss=MaskedL1(learned=True),
                          resume=True)
    _assert_same(_weights(full.model), _weights(resumed.model))
    _assert_same(_weights(full.loss), _weights(resumed.loss))
    assert [m["val_mae"] for m in resumed.history] == [m["val_mae"] for m in full.history]
    assert resumed.best_epoch == full.best_epoch and resumed.checkpoint == tmp_path / "best.pt"

    again = train_model(tiny_model(seed=5), train, val, interrupted, loss=MaskedL1(learned=True), resume=True)
    _assert_same(_weights(full.model), _weights(again.model))  # a finished run resumes to its result
    assert len(again.history) == 4


def test_a_warm_restart_continues_the_best_epoch_with_a_new_schedule(tmp_path: Path) -> None:
    train, val = split(rocksalt_dataset(60), 20)
    earlier = TrainConfig(epochs=3, patience=None, checkpoint_dir=str(tmp_path / "a"), **FAST)
    first = train_model(tiny_model(), train, val, earlier, loss=MaskedL1(learned=True))
    restart = TrainConfig(epochs=2, patience=None, schedule="cosine", init_from=str(tmp_path / "a"),
                          checkpoint_dir=str(tmp_path / "b"), **{**FAST, "lr": 5e-3})
    trainer = Trainer(tiny_model(seed=7), train, val, restart, MaskedL1(learned=True))
    _assert_same(_weights(first.model), _weights(trainer.model))  # the earlier best weights, not seed 7's
    _assert_same(_weights(first.loss), _weights(trainer.loss))
    assert trainer.start_epoch == first.best_epoch and trainer.best_val_mae == first.best_val_mae
    result = trainer.fit()
    kept = [m for m in first.history if m["epoch"] <= first.best_epoch]
    assert result.history[:len(kept)] == kept  # the curve and the training seconds stay whole
    assert [m["epoch"] for m in result.history[len(kept):]] == [first.best_epoch + 1, first.best_epoch + 2]
    assert result.best_val_mae <= first.best_val_mae and not result.stopped_early
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # its own cosine schedule, run to the end

    torch.manual_seed(3)  # an interrupted restart resumes as any run does
    resumed = train_model(tiny_model(seed=9), train, val, restart, loss=MaskedL1(learned=True), resume=True)
    assert len(resumed.history) == len(result.history)
    other = TrainConfig(**{**restart.as_dict(), "checkpoint_dir": None})
    with pytest.raises(ValueError, match="cannot continue from"):
        Trainer(tiny_model(dropout=0.3), train, val, other)  # another architecture's weights do not carry over


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    train, val = split(rocksalt_dataset(40), 10)
    config = TrainConfig(epochs=1, checkpoint_dir=str(tmp_path), **FAST)
    train_model(tiny_model(), train, val, config, loss=MaskedL1())
    with pytest.raises(ValueError, match="lr"):
        changed = TrainConfig(**{**config.as_dict(), "lr": 0.5})
        train_model(tiny_model(), train, val, changed, loss=MaskedL1(), resume=True)


def test_early_stopping_restores_the_best_epoch() -> None:
    train, val = split(rocksalt_dataset(60), 20)
    states: dict[int, dict[str, torch.Tensor]] = {}
    config = TrainConfig(epochs=30, patience=2, schedule="cosine", **FAST)
    trainer = Trainer(tiny_model(dropout=0.0), train, val, config,
                      loss=MaskedL1(sign=-1.0))  # maximising the error: validation gets worse
    result = trainer.fit(on_epoch_end=lambda epoch, _: states.__setitem__(epoch, _weights(trainer.model)))
    val_maes = [m["val_mae"] for m in result.history]
    assert result.stopped_early and len(val_maes) == result.best_epoch + 2
    assert result.best_epoch == int(np.argmin(val_maes)) + 1
    _assert_same(states[result.best_epoch], _weights(result.model))
    restored = mae(val.dataset.targets[40:].numpy(), predict(result.model, result.normalizer, val))
    assert selection_mae(restored, result.normalizer.std.numpy()) == pytest.approx(result.best_val_mae, rel=1e-6)


def test_training_without_validation_keeps_the_last_weights() -> None:
    train, _ = split(rocksalt_dataset(40), 10)
    result = train_model(tiny_model(), train, None, TrainConfig(epochs=2, **FAST), loss=MaskedL1())
    assert result.best_epoch == 2 and np.isnan(result.best_val_mae) and "val_mae" not in result.history[-1]


def test_model_and_data_must_agree() -> None:
    train, val = split(rocksalt_dataset(40), 10)
    one_target = build_model(NAME, n_targets=1, composition_dim=train.dataset.composition.shape[1])
    with pytest.raises(ValueError, match="predicts 1 targets"):
        train_model(one_target, train, val, TrainConfig(epochs=1, **FAST), loss=MaskedL1())
    with pytest.raises(TypeError, match="CrystalDataset"):
        train_model(tiny_model(), [train[0]], val, TrainConfig(epochs=1, **FAST), loss=MaskedL1())


def test_threads_follow_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridmat.training.trainer import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() >= 1


def test_resume_needs_a_checkpoint_dir() -> None:
    train, val = split(rocksalt_dataset(40), 10)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train_model(tiny_model(), train, val, TrainConfig(epochs=1, **FAST), loss=MaskedL1(), resume=True)
