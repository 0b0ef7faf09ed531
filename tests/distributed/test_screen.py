"""Streaming screening on Ray: same predictions as one process, every candidate exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from hybridmat.data.candidates import CandidateSource
from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source
from hybridmat.distributed.screen import screen_with_ray
from hybridmat.features.store import StoreMismatchError, completed_shards, shard_path
from hybridmat.workflows.predict import predict_source, pretrained_checkpoints
from tests.conftest import rocksalt

ELEMENTS = ["Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "O", "S", "Se", "F", "Cl", "Br"]
PROTOTYPES = ["rocksalt", "zincblende", "perovskite", "fluorite"]


pytestmark = pytest.mark.usefixtures("local_ray")


class ScreeningInput(Source):
    """Generated candidates plus bad rows (an unparseable row, an element without data, a repeated id);
    ``delay`` seconds per row keeps a run going long enough to kill an actor in the middle of it."""

    def __init__(self, n: int, delay: float = 0.0) -> None:
        self.candidates = CandidateSource(ELEMENTS, PROTOTYPES, n=n, seed=1)
        self.delay = delay

    def __iter__(self) -> Iterator[SourceItem]:
        return self.iter_range(0, self.count())

    def count(self) -> int:
        return self.candidates.count() + 3

    def iter_range(self, start: int, stop: int) -> Iterator[SourceItem]:
        n = self.candidates.count()
        bad: list[SourceItem] = [RecordError("unreadable", "parse", "not a CIF"),
                                 StructureRecord("og", rocksalt(5.0, "Og", "Cl"), {}),
                                 StructureRecord("cand-rocksalt-LiF", rocksalt(4.0, "Li", "F"), {})]
        for position in range(start, stop):
            time.sleep(self.delay)
            yield next(self.candidates.iter_range(position, position + 1)) if position < n else bad[position - n]

    def fingerprint(self) -> str:
        return "screening-input-" + self.candidates.fingerprint()


def _predictions(out: Path):
    return pq.read_table([shard_path(out, s) for s in sorted(completed_shards(out))]).sort_by("index")


def _reference(source: Source, tmp_path: Path):
    predict_source(source, pretrained_checkpoints(), tmp_path / "reference.parquet")
    return pq.read_table(tmp_path / "reference.parquet")


def test_screen_matches_single_process_prediction(tmp_path: Path) -> None:
    source = ScreeningInput(60)
    manifest = screen_with_ray(source, pretrained_checkpoints(), tmp_path / "screen", spec="test", shard_size=16,
                               featurize_workers=1, progress=False)
    reference = _reference(source, tmp_path)
    table = _predictions(tmp_path / "screen")
    assert table.column("id").to_pylist() == reference.column("id").to_pylist()
    for name in ("e_form_mean", "e_form_std", "band_gap_mean", "band_gap_std"):
        np.testing.assert_allclose(table.column(name).to_numpy(), reference.column(name).to_numpy(), atol=1e-5)
    counts = manifest["counts"]
    assert counts["inputs"] == source.count() == counts["rows"] + counts["errors"]
    errors = pq.read_table(tmp_path / "screen" / "errors.parquet").to_pylist()
    assert {(e["id"], e["stage"]) for e in errors} == {("unreadable", "parse"), ("og", "featurize"),
                                                       ("cand-rocksalt-LiF", "duplicate")}


def test_killed_actors_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    source = ScreeningInput(60, delay=0.05)  # about 3 s of reading: the kill lands mid-run
    out = tmp_path / "screen"
    result: dict = {}

    def run() -> None:
        result["manifest"] = screen_with_ray(source, pretrained_checkpoints(), out, spec="test", shard_size=8,
                                             featurize_workers=1, progress=False, actor_prefix="kill-test")

    worker = threading.Thread(target=run)
    worker.start()
    while not completed_shards(out) and worker.is_alive():
        time.sleep(0.05)
    shards_before_kill = len(completed_shards(out))
    for name in ("kill-test-featurize-0", "kill-test-inference-0"):
        ray.kill(ray.get_actor(name), no_restart=False)  # the actor dies; Ray restarts it
    worker.join(timeout=300)
    assert shards_before_kill < result["manifest"]["counts"]["shards"], "the kill came after the run had finished"
    ids = _predictions(out).column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert ids == _reference(source, tmp_path).column("id").to_pylist()
    assert result["manifest"]["counts"]["inputs"] == source.count()


def test_rerun_resumes_without_duplicates_and_refuses_another_model(tmp_path: Path) -> None:
    source, out = ScreeningInput(40), tmp_path / "screen"
    options = dict(spec="test", shard_size=10, featurize_workers=1, progress=False)
    screen_with_ray(source, pretrained_checkpoints(), out, **options)
    complete = _predictions(out)
    for shard in (1, 3):  # an interrupted run: these shards never committed
        shard_path(out, shard).unlink()
    manifest = screen_with_ray(source, pretrained_checkpoints(), out, **options)
    assert _predictions(out).equals(complete)
    assert manifest["counts"]["inputs"] == source.count()
    with pytest.raises(StoreMismatchError):
        screen_with_ray(source, pretrained_checkpoints()[:2], out, **options)
