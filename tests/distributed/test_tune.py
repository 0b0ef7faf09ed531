"""``hybridmat tune``: a tiny ASHA search on Ray finishes, writes a trainable best job, and resumes; spaces
are checked before any trial starts."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from hybridmat.config import JobFileError, load_job, parse_job
from hybridmat.data.writers import write_structure_table
from hybridmat.distributed.search_space import apply_sample, check_space, decode, encoded_choices
from hybridmat.distributed.tune import SearchResult, run_search, search_algorithm
from hybridmat.workflows.train import run_train_job
from tests.features.test_store import _records

JOBS = Path(__file__).resolve().parents[2] / "jobs"
EPOCHS = 3


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the module (the search's ``ray_session`` uses it and leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A late-fusion search over α, the graph width and lr on 60 tiny structures (48/6/6)."""
    root = tmp_path_factory.mktemp("tune")
    write_structure_table(_records(60), root / "tiny.parquet")
    return {
        "name": "tiny_tune",
        "data": {"source": str(root / "tiny.parquet"), "targets": ["e_form"], "store": str(root / "store")},
        "features": {"composition": "magpie"},
        "model": {"name": "late_fusion", "hyper": {"rf": {"n_estimators": 10, "n_jobs": 1},
                                                   "graph_hyper": {"hidden": 8, "n_conv": 1}}},
        "train": {"epochs": 5, "batch_size": 16, "patience": 10, "device": "cpu", "num_threads": 1},
        "output": str(root / "out"),
        "tune": {"space": {"model.hyper.alpha": {"uniform": [0.0, 1.0]},
                           "model.hyper.graph_hyper.hidden": {"choice": [8, 12]},
                           "train.lr": {"loguniform": [1e-3, 1e-2]}},
                 "num_samples": 3, "max_epochs": EPOCHS, "grace_period": 1, "reduction_factor": 2,
                 "searcher": "random", "storage": str(root / "runs")},
    }


@pytest.fixture(scope="module")
def search(ray_cluster: None, job: dict[str, Any]) -> SearchResult:
    return run_search(parse_job(job), verbose=0, progress=False, log=lambda line: None)


def _history(search: SearchResult) -> dict[str, list[dict]]:
    """Each trial's reported epochs, read back from the results Tune stored."""
    import json

    return {path.parent.name: [json.loads(line) for line in path.read_text().splitlines()]
            for path in sorted(search.experiment.glob("*/result.json"))}


def test_search_finishes_and_writes_a_trainable_best_job(search: SearchResult, job: dict[str, Any]) -> None:
    assert len(search.trials) == 3
    assert all(t.status in ("completed", "ASHA stop") and t.epochs >= 1 for t in search.trials)
    best = load_job(search.best_job)
    assert best.tune is None and best.train.epochs == 5  # train.epochs as in the job, not max_epochs
    alpha = best.model.hyper["alpha"]
    assert alpha == search.best.config["model.hyper.alpha"] and 0.0 <= alpha <= 1.0
    assert best.model.hyper["graph_hyper"]["hidden"] in (8, 12)
    assert best.data.source == job["data"]["source"] and best.output == job["output"] + "_best"
    assert "Best of 3 trials" in search.best_job.read_text().splitlines()[0]
    trained = run_train_job(best.model_copy(update={"train": best.train.model_copy(update={"epochs": 1})}),
                            progress=False)
    assert trained.fitted.details["fusion"]["alpha"] == [alpha]  # `hybridmat train` keeps the tuned α


def test_asha_stops_only_at_rungs_and_only_beaten_trials(search: SearchResult) -> None:
    """Rungs at epochs 1 and 2 (grace 1, factor 2, 3 epochs): a trial stopped early stopped at a rung,
    behind another trial's MAE there, and the best trial at the first rung was never stopped there."""
    histories = list(_history(search).values())
    at_rung = {rung: [h[rung - 1]["val_mae"] for h in histories if len(h) >= rung] for rung in (1, 2)}
    for history in histories:
        epochs = len(history)
        assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
        if epochs < EPOCHS:
            assert epochs in at_rung and history[-1]["val_mae"] > min(at_rung[epochs])
    first_rung_best = min(histories, key=lambda h: h[0]["val_mae"])
    assert len(first_rung_best) > 1


def test_second_run_resumes_without_rerunning_trials(search: SearchResult, job: dict[str, Any]) -> None:
    before = _history(search)
    lines: list[str] = []
    again = run_search(parse_job(job), verbose=0, progress=False, log=lines.append)
    assert again.resumed and lines and "resuming" in lines[0]
    assert _history(again) == before  # same trials, no epoch reported again
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in search.trials]
    changed = {**job, "tune": {**job["tune"], "num_samples": 4}}
    with pytest.raises(JobFileError, match=r"another job.*tune\.num_samples"):
        run_search(parse_job(changed), verbose=0, progress=False)


def test_dotted_override_rejects_unknown_keys_naming_them(job: dict[str, Any]) -> None:
    base = parse_job(job)
    assert apply_sample(base, {"train.lr": 0.005, "model.hyper.graph_hyper.n_conv": 2}).train.lr == 0.005
    with pytest.raises(JobFileError, match=r"train\.lrr"):
        apply_sample(base, {"train.lrr": 0.1})
    for key, dimension, message in [
        ("model.hyper.graph_hyper.dropout", {"uniform": [0.0, 0.3]}, "dropout"),
        ("data.split", {"choice": ["a"]}, "cannot be searched"),
        ("train.epochs", {"choice": [3]}, "max_epochs"),
        ("model.hyper.rf.n_estimators", {"choice": [5]}, "fitted once"),
        ("train.loss_lambdas", {"choice": [[1.0, 2.0]]}, "1 of them"),
    ]:
        bad = parse_job({**job, "tune": {**job["tune"], "space": {key: dimension}}})
        with pytest.raises(JobFileError, match=message) as error:
            check_space(bad)
        assert key in str(error.value)


def test_lambda_choices_travel_as_json_and_yield_to_uncertainty(job: dict[str, Any]) -> None:
    space = {"train.loss_lambdas": {"choice": [[1.0, 1.0], [1.0, 0.5]]},
             "train.loss_weighting": {"choice": ["fixed", "uncertainty"]}}
    multitask = parse_job({**job, "data": {**job["data"], "targets": ["e_form", "band_gap"]},
                           "model": {"name": "multitask", "hyper": {"hidden": 8, "n_conv": 1}},
                           "tune": {**job["tune"], "space": space}})
    check_space(multitask)
    dimension = multitask.tune.space["train.loss_lambdas"]
    assert encoded_choices(dimension) == ["[1.0, 1.0]", "[1.0, 0.5]"]
    sample = decode(multitask.tune.space,
                    {"train.loss_lambdas": "[1.0, 0.5]", "train.loss_weighting": "fixed"})
    assert apply_sample(multitask, sample).train.loss_lambdas == [1.0, 0.5]
    learned = apply_sample(multitask, {**sample, "train.loss_weighting": "uncertainty"})
    assert learned.train.loss_lambdas is None


@pytest.mark.parametrize("name", ["tune_cpu_small.yaml", "tune_multitask.yaml"])
def test_example_jobs_have_searchable_spaces(name: str) -> None:
    check_space(load_job(JOBS / name))


@pytest.mark.skipif(importlib.util.find_spec("optuna") is not None, reason="optuna is installed")
def test_optuna_requested_without_optuna_is_a_clear_error() -> None:
    with pytest.raises(JobFileError, match="pip install optuna"):
        search_algorithm("optuna", 0)
    assert type(search_algorithm("auto", 0)).__name__ == "BasicVariantGenerator"
