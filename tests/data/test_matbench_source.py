"""MatbenchSource through matbench's real loading path, with datasets served from 127.0.0.1.

The datasets are tiny files in matminer's format (``store_dataframe_as_json``, gzip); matminer's dataset
metadata (its URL and SHA-256 per dataset: the library's configuration) is pointed at the local server,
and ``MATMINER_DATA`` at a temporary cache directory. ``matbench_jdft2d`` has its real size (636 rows) so
that matbench's stored folds apply unchanged.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from matminer.datasets import dataset_retrieval
from matminer.datasets.utils import _load_dataset_dict
from matminer.utils.io import store_dataframe_as_json
from pymatgen.core import Lattice, Structure

from hybridmat.data.matbench_source import DatasetUnavailableError, MatbenchSource
from hybridmat.data.records import StructureRecord

E_FORM = [-1.25, 0.5, -3.0]


def _structures(n: int) -> list[Structure]:
    return [
        Structure(Lattice.cubic(3.0 + 0.001 * i), ["Mo", "S"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for i in range(n)
    ]


def _write(directory: Path, task: str, target: str, values: list[float]) -> None:
    frame = pd.DataFrame({"structure": _structures(len(values)), target: values})
    store_dataframe_as_json(frame, str(directory / f"{task}.json.gz"), compression="gz", pbar=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a directory of tiny matminer-format datasets: ``(base url, directory)``."""
    directory = tmp_path_factory.mktemp("served")
    _write(directory, "matbench_mp_e_form", "e_form", E_FORM)
    _write(directory, "matbench_perovskites", "e_form", [1.5, 2.0])
    _write(directory, "matbench_jdft2d", "exfoliation_en", [float(i) for i in range(636)])
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", directory
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: tuple[str, Path]) -> Path:
    """An empty matminer cache, with matminer's metadata pointing the served tasks at the local server."""
    base, directory = served
    metadata = copy.deepcopy(_load_dataset_dict())
    for path in directory.glob("*.json.gz"):
        task = path.name.removesuffix(".json.gz")
        metadata[task]["url"] = f"{base}/{path.name}"
        metadata[task]["hash"] = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(dataset_retrieval, "_dataset_dict", metadata)
    monkeypatch.setenv("MATMINER_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/matbench_mp_e_form.json.gz"


def test_downloads_and_reads_a_task(cache: Path) -> None:
    items = list(MatbenchSource("matbench_mp_e_form"))
    assert (cache / "matbench_mp_e_form.json.gz").is_file()
    assert [item.id for item in items] == ["mb-mp-e-form-1", "mb-mp-e-form-2", "mb-mp-e-form-3"]
    assert all(isinstance(item, StructureRecord) for item in items)
    assert [item.targets for item in items] == [{"e_form": value} for value in E_FORM]
    assert items[1].structure == _structures(3)[1]
    assert items[0].provenance == "matbench_v0.1:matbench_mp_e_form"


def test_perovskites_target_is_a_heat_of_formation_not_e_form(cache: Path) -> None:
    source = MatbenchSource("perovskites")
    assert source.targets == ("heat_of_formation_per_cell",)
    assert [item.targets for item in source] == [
        {"heat_of_formation_per_cell": 1.5},
        {"heat_of_formation_per_cell": 2.0},
    ]


def test_folds_are_matbenchs_own(cache: Path) -> None:
    from matbench.metadata import mbv01_validation

    folds = mbv01_validation.splits["matbench_jdft2d"]
    test = MatbenchSource("matbench_jdft2d", fold=2, split="test")
    train = MatbenchSource("matbench_jdft2d", fold=2, split="train")
    test_ids, train_ids = [item.id for item in test], [item.id for item in train]
    assert test_ids == list(folds["fold_2"]["test"]) and train_ids == list(folds["fold_2"]["train"])
    assert len(set(test_ids) | set(train_ids)) == 636
    first = next(iter(test))
    assert first.targets == {"exfoliation_en": float(int(first.id.rsplit("-", 1)[1]) - 1)}
    assert first.provenance.endswith(":fold2")


def test_offline_download_failure_says_what_to_put_where(cache: Path) -> None:
    url = dataset_retrieval._dataset_dict["matbench_mp_e_form"]["url"] = _closed_port_url()
    with pytest.raises(DatasetUnavailableError) as raised:
        list(MatbenchSource("matbench_mp_e_form"))
    message = str(raised.value)
    for needed in (
        "matbench_mp_e_form.json.gz",
        url,
        str(cache),
        "MATMINER_DATA",
        "SHA-256",
        dataset_retrieval._dataset_dict["matbench_mp_e_form"]["hash"],
    ):
        assert needed in message
    assert not (cache / "matbench_mp_e_form.json.gz").exists()


def test_wrong_download_fails_at_once_and_is_removed(cache: Path, served: tuple[str, Path]) -> None:
    # A 404 page is saved and fails matminer's hash check; matminer would sleep 60 s and retry 3 times.
    dataset_retrieval._dataset_dict["matbench_mp_e_form"]["url"] = f"{served[0]}/missing.json.gz"
    with pytest.raises(DatasetUnavailableError, match="downloading"):
        list(MatbenchSource("matbench_mp_e_form"))
    assert not (cache / "matbench_mp_e_form.json.gz").exists()


def test_a_file_placed_by_hand_is_used_offline(cache: Path, served: tuple[str, Path]) -> None:
    cache.mkdir()
    (cache / "matbench_mp_e_form.json.gz").write_bytes(
        (served[1] / "matbench_mp_e_form.json.gz").read_bytes()
    )
    dataset_retrieval._dataset_dict["matbench_mp_e_form"]["url"] = _closed_port_url()
    assert len(list(MatbenchSource("matbench_mp_e_form"))) == 3


def test_a_corrupt_cached_file_is_reported_and_kept(cache: Path) -> None:
    cache.mkdir()
    (cache / "matbench_mp_e_form.json.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetUnavailableError, match="could not be read"):
        list(MatbenchSource("matbench_mp_e_form"))
    assert (cache / "matbench_mp_e_form.json.gz").read_bytes() == b"not gzip"


def test_rejects_composition_tasks_and_bad_options() -> None:
    with pytest.raises(ValueError, match=r"compositions.*matbench_mp_e_form"):
        MatbenchSource("matbench_expt_gap")
    with pytest.raises(ValueError, match="unknown Matbench task"):
        MatbenchSource("matbench_nope")
    with pytest.raises(ValueError, match="fold"):
        MatbenchSource("matbench_mp_gap", split="test")
    with pytest.raises(ValueError, match="fold"):
        MatbenchSource("matbench_mp_gap", fold=1)
    with pytest.raises(ValueError, match="split"):
        MatbenchSource("matbench_mp_gap", fold=1, split="val")
    assert MatbenchSource("matbench_mp_gap").targets == ("band_gap",)


def test_fingerprint_follows_task_fold_and_split() -> None:
    prints = {
        MatbenchSource("mp_gap").fingerprint(),
        MatbenchSource("mp_gap", 0, "test").fingerprint(),
        MatbenchSource("mp_gap", 1, "test").fingerprint(),
        MatbenchSource("mp_gap", 1, "train").fingerprint(),
    }
    assert len(prints) == 4
    assert MatbenchSource("mp_gap").fingerprint() == MatbenchSource("matbench_mp_gap").fingerprint()
