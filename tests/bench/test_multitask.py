"""The negative-transfer report: the pure comparison on constructed predictions; the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hybridmat.bench.multitask import TARGETS, bench_multitask_command, negative_transfer
from hybridmat.data.writers import write_structure_table
from tests.features.test_store import _records


def pure_noise_case(n: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """e_form is learnable, band_gap is pure noise; the shared trunk carries a noise-fitting feature.

    Single-task: e_form predicted up to a small error, band_gap by its mean (nothing to learn). Multi-task:
    the trunk that fitted the noise target's training labels passes a spurious feature, unrelated to the
    test labels, into both heads.
    """
    rng = np.random.default_rng(0)
    e_form, band_gap, spurious = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    labels = np.column_stack([e_form, band_gap])
    single = np.column_stack([e_form + 0.1 * rng.normal(size=n), np.zeros(n)])
    multi = single + 0.3 * spurious[:, None]
    return labels, single, multi


def test_pure_noise_second_target_gives_negative_transfer() -> None:
    labels, single, multi = pure_noise_case()
    labels[:100, 1] = np.nan  # missing band_gap labels: ignored for band_gap and for the correlation
    report = negative_transfer(labels, single, multi, TARGETS)
    e_form, band_gap = report["targets"]
    assert e_form["target"] == "e_form" and e_form["negative"] and band_gap["negative"]
    assert e_form["n"] == 4000 and band_gap["n"] == 3900
    assert e_form["delta"] > 5 * e_form["delta_se"]  # far beyond test-sampling noise
    np.testing.assert_allclose(e_form["single_mae"], np.abs(single[:, 0] - labels[:, 0]).mean())
    np.testing.assert_allclose(e_form["relative"], e_form["delta"] / e_form["single_mae"])
    residual = multi[100:] - labels[100:]
    expected = np.corrcoef(residual[:, 0], residual[:, 1])[0, 1]
    assert report["residual_correlation"]["e_form~band_gap"] == pytest.approx(expected)
    assert 0.15 < expected < 0.4  # ≈ 0.09 / sqrt(0.10 × 1.09) for this construction


def test_helpful_second_target_is_not_flagged() -> None:
    labels, single, _ = pure_noise_case()
    multi = single.copy()
    multi[:, 0] = labels[:, 0] + 0.5 * (single[:, 0] - labels[:, 0])  # sharing halves the e_form error
    e_form, band_gap = negative_transfer(labels, single, multi, TARGETS)["targets"]
    assert not e_form["negative"] and e_form["delta"] < 0
    assert not band_gap["negative"] and band_gap["delta"] == 0


def test_rejects_mismatched_shapes_and_unlabelled_target() -> None:
    labels, single, multi = pure_noise_case(10)
    with pytest.raises(ValueError, match="must all be"):
        negative_transfer(labels, single[:, :1], multi, TARGETS)
    labels[:, 1] = np.nan
    with pytest.raises(ValueError, match="band_gap"):
        negative_transfer(labels, single, multi, TARGETS)


def test_command_trains_all_runs_and_writes_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two single-task and two multi-task runs (1 epoch each) on a 16-structure split of a tiny table."""
    monkeypatch.chdir(tmp_path)  # the feature store goes to ./runs/features
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    source = tmp_path / "tiny.parquet"
    write_structure_table(_records(16), source)
    ids = [f"r-{i}" for i in range(16)]
    (tmp_path / "splits.json").write_text(json.dumps({"cpu_small": {"train": ids[:10], "val": ids[10:13],
                                                                    "test": ids[13:]}}))
    app = typer.Typer()
    app.command()(bench_multitask_command)
    out = tmp_path / "multitask.json"
    result = CliRunner().invoke(app, ["--split", "cpu_small", "--device", "cpu", "--epochs", "1",
                                      "--data", str(source), "--json", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert [r["model"] for r in payload["results"]] == [
        f"multitask {run}" for run in ("single-task", "fixed", "uncertainty") for _ in TARGETS
    ]
    assert set(payload["transfer"]) == {"fixed", "uncertainty"}
    assert all(isinstance(r["negative"], bool) for r in payload["transfer"]["fixed"]["targets"])
    assert payload["loss_weights"]["fixed"]["normalised"] == [1.0, 1.0]
    assert payload["details"]["multi-task uncertainty"]["epochs_run"] == 1
