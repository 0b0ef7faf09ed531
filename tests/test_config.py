"""Job files: unknown keys and wrong types fail early, naming the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmat.config import JobFileError, load_job, parse_job

MINIMAL = {"data": {"source": "data.parquet"}, "model": {"name": "rf"}}


def test_defaults_and_relative_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    job_file = tmp_path / "jobs" / "job.yaml"
    job_file.parent.mkdir()
    job_file.write_text("data:\n  source: ../data/x.parquet?split=cpu_small/train\n"
                        "model:\n  name: rf\noutput: ../runs/a\ntrain:\n  init_from: ../runs/earlier\n")
    job = load_job(job_file)
    assert job.data.source == f"{(tmp_path / 'data' / 'x.parquet').resolve()}?split=cpu_small/train"
    assert job.output == str((tmp_path / "runs" / "a").resolve())
    assert job.train.init_from == str((tmp_path / "runs" / "earlier").resolve())  # a warm restart's earlier job
    assert job.train.epochs == 100 and job.data.targets == ["e_form"] and job.ensemble == 1


def test_scheme_sources_are_not_treated_as_paths(tmp_path: Path) -> None:
    job = parse_job({**MINIMAL, "data": {"source": "matbench:matbench_mp_e_form?fold=0"}}, base=tmp_path)
    assert job.data.source == "matbench:matbench_mp_e_form?fold=0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trian": {}}, "unknown key 'trian'; allowed keys here: ['data', 'ensemble'"),
        ({"data": {"source": "x", "splitt": "a"}}, "unknown key 'data.splitt'"),
        ({"train": {"epochs": "ten"}}, "'train.epochs'"),
        ({"train": {"schedule": "step"}}, "'onecycle' or 'cosine'"),
        ({"train": {"patience": 0}}, "'train.patience': Input should be greater than or equal to 1"),
        ({"model": {"name": "cgcn"}}, "unknown model 'cgcn'; allowed"),
        ({"ensemble": 0}, "'ensemble'"),
        ({"model": {"name": "cgcnn", "hyper": {"hiden": 32}}},
         "unknown hyper-parameter 'hiden' (allowed: ['atom_dim', 'edge_dim', 'head_hidden', 'hidden', 'n_conv'"),
        ({"model": {"name": "cgcnn", "hyper": {"hidden": 0}}}, "'hidden': Input should be greater than or equal to 1"),
        ({"model": {"name": "rf", "hyper": {"n_estimators": "many"}}}, "'n_estimators': Input should be a valid"),
        ({"model": {"name": "late_fusion", "hyper": {"graph_hyper": {"n_cov": 2}}}}, "unknown hyper-parameter 'n_cov'"),
        ({"model": {"name": "late_fusion", "hyper": {"rf": {"depth": 2}}}}, "unknown hyper-parameter 'depth'"),
        ({"model": {"name": "late_fusion", "hyper": {"alpha": 1.5}}}, "'alpha': Input should be less than or equal"),
    ],
)
def test_bad_job_names_the_key(change: dict, message: str) -> None:
    with pytest.raises(JobFileError) as error:
        parse_job({**MINIMAL, **change})
    assert message in str(error.value)


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(JobFileError, match="mapping"):
        load_job(path)


def test_hyper_values_are_typed_by_the_models_schema() -> None:
    job = parse_job({**MINIMAL, "model": {"name": "cgcnn", "hyper": {"hidden": "32", "n_conv": 2}}})
    assert job.model.hyper == {"hidden": 32, "n_conv": 2}


def test_train_section_is_the_job_face_of_the_trainer_config() -> None:
    """Every `train:` key is a TrainConfig field with the same default, so neither can drift from the other."""
    from dataclasses import fields

    from hybridmat.config import TrainSection
    from hybridmat.training.trainer import TrainConfig
    from hybridmat.workflows.train import TRAIN_CONFIG_NAMES, train_config

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for key, field in TrainSection.model_fields.items():
        assert defaults[TRAIN_CONFIG_NAMES.get(key, key)] == field.get_default(call_default_factory=True), key
    job = parse_job({**MINIMAL, "train": {"lr": 0.01, "loss_lambdas": [1.0, 2.0], "num_threads": 2}})
    assert train_config(job) == TrainConfig(lr=0.01, loss_weights=(1.0, 2.0), num_threads=2)
    assert train_config(parse_job({**MINIMAL, "train": {"patience": None}})).patience is None  # run the schedule out


JOBS = Path(__file__).parents[1] / "jobs"


@pytest.mark.parametrize("job_file", sorted([*JOBS.glob("*.yaml"), *(JOBS / "castelli").glob("*.yaml")]))
def test_cpu_small_jobs_use_the_benchmark_plan(job_file: Path) -> None:
    """A `cpu_small` job trains its model as `hybridmat bench models --split cpu_small` does."""
    from hybridmat.bench.models import PLANS
    from hybridmat.workflows.train import train_config

    job = load_job(job_file)
    if job.data is None or job.data.split != "cpu_small":
        pytest.skip("not a cpu_small training job")
    plan = PLANS["cpu_small"]
    name, hyper = job.model.name, job.model.hyper
    if name == "late_fusion":  # its parents are the plan's forest and graph model
        assert hyper["rf"] == plan.hyper["rf"]
        name, hyper = hyper.get("graph_model", "cgcnn"), hyper.get("graph_hyper", {})
    assert hyper == plan.hyper[name]
    expected = plan.config(name, job.train.device, job.train.seed)
    actual = train_config(job)
    for key in ("epochs", "batch_size", "lr", "weight_decay", "schedule", "patience"):
        assert getattr(actual, key) == getattr(expected, key), key


def test_screen_filter_section_takes_the_plausibility_settings(tmp_path: Path) -> None:
    job = parse_job({"screen": {"source": "c.parquet", "filter": {"min_state_share": 0.02}}}, base=tmp_path)
    assert job.screen.filter.min_state_share == 0.02 and job.screen.filter.rules[0] == "charge_balance"
    assert parse_job({"screen": {"source": "c.parquet"}}, base=tmp_path).screen.filter is None
    with pytest.raises(JobFileError, match="unknown key 'screen.filter.rule'"):
        parse_job({"screen": {"source": "c.parquet", "filter": {"rule": ["geometry"]}}}, base=tmp_path)
