"""Job files: unknown keys and wrong types fail early, naming the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmat.config import JobFileError, load_job, parse_job

MINIMAL = {"data": {"source": "data.parquet"}, "model": {"name": "rf"}}


def test_defaults_and_relative_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    job_file = tmp_path / "jobs" / "job.yaml"
    job_file.parent.mkdir()
    job_file.write_text("data:\n  source: ../data/x.parquet?split=cpu_small/train\nmodel:\n  name: rf\noutput: ../runs/a\n")
    job = load_job(job_file)
    assert job.data.source == f"{(tmp_path / 'data' / 'x.parquet').resolve()}?split=cpu_small/train"
    assert job.output == str((tmp_path / "runs" / "a").resolve())
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
        ({"model": {"name": "cgcn"}}, "unknown model 'cgcn'; allowed"),
        ({"ensemble": 0}, "'ensemble'"),
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
