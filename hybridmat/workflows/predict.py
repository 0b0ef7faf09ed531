"""``hybridmat predict``: an ensemble on any source, written as one Parquet table.

A model directory holds the members (``member-k.pt``, or a training job's ``member-k/best.pt``), for an ensemble
of different models their per-target weights (``ensemble.json``, written by ``hybridmat export``) and, once
fitted with ``hybridmat calibrate``, ``calibration.json`` + ``domain.npz``. :func:`model_files` reads them as
bytes (what a Ray actor receives) and :func:`load_predictor` is the one loader. Every input row ends up
either in the predictions (``id, formula, n_sites, <t>_mean, <t>_std[, <t>_lo, <t>_hi]...[, domain_score,
in_domain], model_id``) or in ``<out>.errors.parquet`` with its id, stage and reason. With a calibration,
``<t>_std`` is the calibrated standard deviation and ``<t>_lo``/``<t>_hi`` the 90 % interval; without one,
``<t>_std`` is the raw spread of the members. With no models given, the shipped ``hybridmat/pretrained`` is used.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hybridmat.atomic_io import atomic_write_parquet
from hybridmat.data.records import RecordError, StructureRecord, drop_duplicate_ids
from hybridmat.data.source import Source
from hybridmat.data.validate import clip_to_target_range, clip_to_target_ranges
from hybridmat.features.columns import errors_to_table
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeatureBatch, FeaturizerSettings, featurize_records
from hybridmat.training.calibration import INTERVAL_LEVEL, ONE_SIGMA, EnsembleCalibration
from hybridmat.training.domain import DomainModel
from hybridmat.training.ensemble import Ensemble
from hybridmat.training.stacking import MemberWeights

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
CALIBRATION_FILE = "calibration.json"
DOMAIN_FILE = "domain.npz"
WEIGHTS_FILE = "ensemble.json"


def _digest(blobs: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(blob)
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class ModelFiles:
    """An ensemble's files as bytes: the members, their weights (``ensemble.json``) and ``calibration.json`` +
    ``domain.npz`` when each was fitted for exactly these members (``stale`` says why files beside the members
    were not used)."""

    members: tuple[bytes, ...]
    calibration: bytes | None = None
    domain: bytes | None = None
    stale: str | None = field(default=None, compare=False)
    weights: bytes | None = None

    @property
    def checkpoints_id(self) -> str:
        """Content hash of the member checkpoints alone (what member weights record they were fitted for)."""
        return _digest(self.members)

    @property
    def members_id(self) -> str:
        """Content hash of the members as combined: checkpoints and weights (what a calibration records it was
        fitted for; the checkpoints' hash when the members are averaged equally)."""
        return _digest([*self.members, self.weights or b""])

    @property
    def model_id(self) -> str:
        """Content hash of everything that shapes a prediction: members, weights, calibration and domain model."""
        return _digest([*self.members, self.weights or b"", self.calibration or b"", self.domain or b""])


def member_checkpoints(directory: Path) -> list[Path]:
    """``member-k.pt`` of a model directory, else ``member-k/best.pt`` of a training job's output."""
    directory = Path(directory)
    paths = sorted(directory.glob("member-*.pt")) or sorted(directory.glob("member-*/best.pt"))
    if not paths:
        raise FileNotFoundError(f"no member-*.pt or member-*/best.pt in {directory}; train and export an ensemble "
                                "(`hybridmat train JOB.yaml`, `hybridmat export JOB.yaml --dest DIR`)")
    return paths


def pretrained_checkpoints() -> list[Path]:
    """The shipped ensemble's member checkpoints."""
    return member_checkpoints(PRETRAINED_DIR)


def model_files(models: Path | Sequence[Path] | None = None) -> ModelFiles:
    """Read a model directory (default: the shipped one) or a list of member checkpoints; the calibration in
    the members' directory comes along when it was fitted for these members."""
    if models is None or isinstance(models, str | Path):
        checkpoints = member_checkpoints(Path(models or PRETRAINED_DIR))
    else:
        checkpoints = [Path(m) for m in models]
    if len(checkpoints) == 1 and checkpoints[0].is_dir():
        checkpoints = member_checkpoints(checkpoints[0])
    members = tuple(path.read_bytes() for path in checkpoints)
    folders = {path.resolve().parent for path in checkpoints}
    folders |= {folder.parent for folder in folders if folder.name.startswith("member-")}
    weights = _beside(folders, WEIGHTS_FILE)
    weight_bytes = weights.read_bytes() if weights else None
    if weight_bytes and json.loads(weight_bytes).get("checkpoints_id") != _digest(members):
        return ModelFiles(members, stale=f"equal weights, uncalibrated: {weights} was fitted for other members; "
                                         "export the ensemble again and refit its calibration")
    calibration_file = _beside(folders, CALIBRATION_FILE)
    if calibration_file is None:
        return ModelFiles(members, weights=weight_bytes)
    calibration = calibration_file.read_bytes()
    domain = calibration_file.parent / DOMAIN_FILE
    domain_bytes = domain.read_bytes() if domain.is_file() else None
    recorded = json.loads(calibration)
    problem = None
    if recorded.get("members_id") != ModelFiles(members, weights=weight_bytes).members_id:
        problem = f"{calibration_file} was fitted for other members ({recorded.get('members_id')})"
    elif recorded.get("domain_sha256") != (domain_bytes and hashlib.sha256(domain_bytes).hexdigest()):
        problem = f"{domain} is not the domain model {calibration_file} was fitted with"
    if problem:
        return ModelFiles(members, stale=f"uncalibrated: {problem}; refit with `hybridmat calibrate "
                                         f"{calibration_file.parent}`", weights=weight_bytes)
    return ModelFiles(members, calibration, domain_bytes, weights=weight_bytes)


def _beside(folders: Iterable[Path], name: str) -> Path | None:
    """The one file ``name`` in ``folders`` (None when there is none, or one in more than one folder)."""
    found = [folder / name for folder in folders if (folder / name).is_file()]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True, eq=False)
class Predictor:
    """A loaded ensemble with its featurizer settings, calibration and domain model."""

    ensemble: Ensemble
    settings: FeaturizerSettings
    model_id: str
    calibration: EnsembleCalibration | None = None
    domain: DomainModel | None = None

    @property
    def target_names(self) -> tuple[str, ...]:
        return self.ensemble.target_names

    def raw_predict(self, batch: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of the members, each ``(n, T)``, before calibration; the mean within each target's
        physical range."""
        if not len(batch):
            return np.empty((0, len(self.target_names))), np.empty((0, len(self.target_names)))
        line_graph = any(m.model.needs_line_graph for m in self.ensemble.members)
        mean, std = self.ensemble.predict(CrystalDataset(batch, [], line_graph))
        return clip_to_target_ranges(mean, self.target_names), std

    def predict_batch(self, batch: FeatureBatch, index: bool = False) -> pa.Table:
        """The predictions table of a feature batch (with the input ``index`` column when asked)."""
        names = self.target_names
        mean, std = self.raw_predict(batch)
        columns: dict[str, Any] = {"index": pa.array(batch.index, pa.int64())} if index else {}
        columns |= {"id": pa.array(batch.ids, pa.string()), "formula": pa.array(batch.formulas, pa.string()),
                    "n_sites": pa.array([g.num_nodes for g in batch.graphs], pa.int32())}
        score = self.domain.score(batch.composition) if self.domain is not None and len(batch) else None
        for t, name in enumerate(names):
            columns[f"{name}_mean"] = pa.array(mean[:, t], pa.float64())
            if self.calibration is None:
                columns[f"{name}_std"] = pa.array(std[:, t], pa.float64())
                continue
            target = self.calibration[name]
            columns[f"{name}_std"] = pa.array(target.half_width(std[:, t], ONE_SIGMA, score), pa.float64())
            lo, hi = target.interval(mean[:, t], std[:, t], INTERVAL_LEVEL, score)
            lo, hi = clip_to_target_range(lo, name), clip_to_target_range(hi, name)  # a band gap's lo is >= 0
            columns[f"{name}_lo"], columns[f"{name}_hi"] = pa.array(lo, pa.float64()), pa.array(hi, pa.float64())
        if self.domain is not None:
            scores = np.empty(0) if score is None else score
            columns["domain_score"] = pa.array(scores, pa.float64())
            columns["in_domain"] = pa.array(self.domain.in_domain(scores), pa.bool_())
        columns["model_id"] = pa.array([self.model_id] * len(batch), pa.string())
        return pa.table(columns)

    def predict_records(self, records: Iterable[StructureRecord | RecordError], chunk_size: int = 1000,
                        ) -> tuple[pa.Table, list[tuple[int, RecordError]]]:
        """Predict records in chunks; ``(predictions, (input position, error) per failed row)``."""
        tables = [self.predict_batch(_empty_batch(self.settings))]
        errors: list[tuple[int, RecordError]] = []
        items = enumerate(drop_duplicate_ids(records))
        while chunk := list(itertools.islice(items, chunk_size)):
            good = [(i, item) for i, item in chunk if not isinstance(item, RecordError)]
            errors += [(i, item) for i, item in chunk if isinstance(item, RecordError)]
            batch, failed = featurize_records([r for _, r in good], self.settings, (), [i for i, _ in good])
            errors += failed
            if len(batch):
                tables.append(self.predict_batch(batch))
        return pa.concat_tables(tables), sorted(errors, key=lambda pair: pair[0])


def _empty_batch(settings: FeaturizerSettings) -> FeatureBatch:
    batch, _ = featurize_records([], settings)
    return batch


def load_predictor(models: ModelFiles | Path | Sequence[Path] | None = None, device: str = "cpu") -> Predictor:
    """The one ensemble loader: members (checking they share featurizer settings), their weights, calibration and
    domain model."""
    files = models if isinstance(models, ModelFiles) else model_files(models)
    weights = None if files.weights is None else MemberWeights.from_dict(json.loads(files.weights))
    ensemble = Ensemble.from_checkpoints(files.members, device, weights)
    settings = FeaturizerSettings.from_dict(ensemble.featurizer_settings)
    calibration = domain = None
    if files.calibration is not None:
        calibration = EnsembleCalibration.from_dict(json.loads(files.calibration)["calibration"])
        missing = set(ensemble.target_names) - {c.target for c in calibration.targets}
        if missing:
            raise ValueError(f"the calibration has no {sorted(missing)}; refit it with `hybridmat calibrate`")
    if files.domain is not None:
        with np.load(io.BytesIO(files.domain), allow_pickle=False) as arrays:
            domain = DomainModel.from_dict(arrays)
        if domain.composition != settings.composition:
            raise ValueError(f"the domain model uses {domain.composition} features, the members "
                             f"{settings.composition}; refit it with `hybridmat calibrate`")
    return Predictor(ensemble, settings, files.model_id, calibration, domain)


def model_id(models: Path | Sequence[Path] | None = None) -> str:
    """A short content hash naming a model (changes whenever any member, the calibration or domain changes)."""
    return model_files(models).model_id


def predict_source(source: Source, models: ModelFiles | Path | Sequence[Path] | None, out: Path,
                   chunk_size: int = 1000) -> dict[str, int]:
    """Predict every structure of ``source``; write ``out`` and ``<out>.errors.parquet`` atomically."""
    predictor = load_predictor(models)
    result, errors = predictor.predict_records(source, chunk_size)
    atomic_write_parquet(result, Path(out))
    atomic_write_parquet(errors_to_table(errors), errors_path(out))
    return {"inputs": result.num_rows + len(errors), "predicted": result.num_rows, "errors": len(errors)}


def errors_path(out: Path) -> Path:
    """``PRED.parquet`` -> ``PRED.errors.parquet``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.errors.parquet")
