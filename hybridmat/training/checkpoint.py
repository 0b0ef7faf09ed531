"""Model checkpoints that rebuild themselves, and prediction in original target units.

A checkpoint is one ``torch.save`` file holding only plain Python values and tensors, so that
``torch.load(path, weights_only=True)`` reads it without unpickling code. Keys:

* ``format`` (``"hybridmat-checkpoint"``), ``format_version`` (1), ``hybridmat_version``
* ``name``, ``config``: the registered model name and ``model.config``; ``build_model(name, **config)``
  rebuilds the architecture
* ``state_dict``: the model's tensors (on CPU)
* ``normalizer``: :meth:`TargetNormalizer.state_dict` (``mean``, ``std``, ``target_names``)
* ``target_names``: the model's output columns, in order
* ``featurizer_settings``: the feature-store settings the model was trained on (or ``None``), edge basis
  included (:meth:`FeaturizerSettings.from_dict` reads settings written before it was recorded)
* ``metrics``: e.g. validation/test metrics; ``extra``: anything else plain (train config, loss state)

Files are written atomically (temporary file, then rename), so a crash never leaves a truncated one.
"""

from __future__ import annotations

import inspect
import io
import pickle
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hybridmat import __version__
from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.console import UserError
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.graph import GaussianBasis
from hybridmat.models.base import MODEL_REGISTRY, PropertyModel, build_model
from hybridmat.training.collate import GraphTable
from hybridmat.training.heap import retained_heap
from hybridmat.training.normalizer import TargetNormalizer

FORMAT = "hybridmat-checkpoint"
FORMAT_VERSION = 1


def plain(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with numpy values turned into Python/tensors; raises for anything not weights-only safe."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, (list, tuple)):
        items = [plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping):
        bad = [key for key in value if not isinstance(key, (str, int))]
        if bad:
            raise TypeError(f"{where} has keys of type {type(bad[0]).__name__}; use str or int keys")
        return {key: plain(item, f"{where}.{key}") for key, item in value.items()}
    raise TypeError(
        f"{where} is a {type(value).__name__}, which torch.load(weights_only=True) cannot read; "
        "store plain values (str, int, float, bool, None, lists, dicts, tensors)"
    )


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` of plain ``state`` to ``path``, atomically."""
    buffer = io.BytesIO()
    torch.save(plain(state), buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_state(path: Path | bytes, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Inverse of :func:`write_state` from a file or its bytes (weights-only unpickling, tensors on ``device``)."""
    handle = io.BytesIO(path) if isinstance(path, bytes) else Path(path)
    where = "checkpoint bytes" if isinstance(path, bytes) else f"checkpoint {path}"
    if not isinstance(path, bytes) and handle.is_dir():
        raise UserError(f"{where} is a directory; give the checkpoint files (e.g. {handle}/member-*.pt)")
    try:
        state = torch.load(handle, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as error:
        # weights-only unpickling refused it (code in the pickle), or it is no torch.save file at all; keep
        # torch's one line naming the cause, not its advice to retry with weights_only=False
        boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
        lines = [line.strip().removeprefix("WeightsUnpickler error:").strip() for line in str(error).splitlines()]
        cause = next((line for line in lines if line and not line.startswith(boilerplate)), type(error).__name__)
        raise UserError(f"{where} was rejected: not a weights-only torch checkpoint ({cause[:200]})") from None
    if not isinstance(state, dict):
        raise UserError(f"{where} holds a {type(state).__name__}, not a checkpoint mapping")
    return state


def edge_dim_config(model_name: str, edge_basis: GaussianBasis) -> dict[str, int]:
    """``{"edge_dim": edge_basis.size}`` for a model that reads ``edge_attr`` (takes ``edge_dim``), else ``{}``."""
    import hybridmat.models  # noqa: F401  (registers the built-in models)

    model_class = MODEL_REGISTRY.get(model_name)
    takes = model_class is not None and "edge_dim" in inspect.signature(model_class).parameters
    return {"edge_dim": edge_basis.size} if takes else {}


def check_edge_basis(trained_settings: Mapping[str, Any] | None, edge_basis: GaussianBasis, where: str) -> None:
    """Raise :class:`UserError` when ``where`` expands bond lengths unlike the settings a model was trained with."""
    if trained_settings is None:
        return
    trained = FeaturizerSettings.from_dict(trained_settings).edge_basis
    if trained != edge_basis:
        raise UserError(f"{where} expands bond lengths with {edge_basis}, the model's featurizer settings with "
                        f"{trained}; featurize with those settings (cutoff, edge_basis_stop, edge_basis_step)")


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def save_checkpoint(
    path: Path,
    model: PropertyModel,
    normalizer: TargetNormalizer,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    featurizer_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-describing checkpoint of ``model`` (see the module docstring for its keys)."""
    if normalizer.n_targets != model.n_targets:
        raise ValueError(
            f"normalizer has {normalizer.n_targets} targets {normalizer.target_names}, "
            f"model {model.name!r} predicts {model.n_targets}"
        )
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hybridmat_version": __version__,
        "name": model.name,
        "config": dict(model.config),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "normalizer": normalizer.state_dict(),
        "target_names": list(normalizer.target_names),
        "featurizer_settings": None if featurizer_settings is None else dict(featurizer_settings),
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
    }
    write_state(Path(path), state)
    return Path(path)


def load_checkpoint(
    path: Path | bytes, device: str | torch.device = "cpu"
) -> tuple[PropertyModel, TargetNormalizer, dict[str, Any]]:
    """Rebuild the model (eval mode, on ``device``), its normaliser, and the remaining keys as ``meta``.

    ``path`` may also be the file's bytes (a checkpoint shipped to a Ray worker on another node).
    """
    state = read_state(path, device)
    if state.get("format") != FORMAT:
        where = "checkpoint bytes" if isinstance(path, bytes) else path
        raise UserError(f"{where} is not a hybridmat model checkpoint (format {state.get('format')!r})")
    model = build_model(state["name"], **state["config"])
    edge_dim, settings = state["config"].get("edge_dim"), state.get("featurizer_settings")
    if edge_dim is not None and settings is not None:
        basis = FeaturizerSettings.from_dict(settings).edge_basis
        if basis.size != edge_dim:
            where = "checkpoint bytes" if isinstance(path, bytes) else path
            raise UserError(f"{where}: the model reads {edge_dim} edge features but its featurizer settings give "
                            f"{basis}; the checkpoint is inconsistent, retrain it")
    model.load_state_dict(state["state_dict"])
    model.to(device).eval()
    normalizer = TargetNormalizer.from_state_dict(state["normalizer"])
    meta = {key: value for key, value in state.items() if key not in ("state_dict", "normalizer")}
    return model, normalizer, meta


def predict_table(
    model: PropertyModel,
    normalizer: TargetNormalizer,
    table: GraphTable,
    batch_size: int = 256,
    amp_dtype: torch.dtype | None = None,
    retain_heap: bool = True,
) -> np.ndarray:
    """``(n, T)`` float32 predictions in original units for every structure of ``table``, in order.

    Runs in eval mode under ``torch.inference_mode()``; ``amp_dtype`` enables CUDA autocast. On CPU and with
    ``retain_heap`` the freed heap is kept for the call (:mod:`hybridmat.training.heap`: ALIGNN inference 2.8x
    faster in ``hybridmat bench alignn``).
    """
    edge_dim = model.config.get("edge_dim")
    if edge_dim is not None and edge_dim != table.edge_basis.size:
        raise UserError(f"model {model.name!r} reads {edge_dim} edge features, the data gives {table.edge_basis}; "
                        "featurize with the featurizer settings stored in the model's checkpoint")
    device = model_device(model)
    model.eval()
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None and device.type == "cuda"
        else nullcontext()
    )
    outputs = []
    with torch.inference_mode(), autocast, retained_heap(retain_heap and device.type == "cpu"):
        for batch in table.batches(batch_size):
            batch = batch if device.type == "cpu" else batch.to(device, non_blocking=True)
            outputs.append(normalizer.denormalize(model(batch).float()))
    return torch.cat(outputs).cpu().numpy()


def predict(
    model: PropertyModel, normalizer: TargetNormalizer, dataset: Dataset, batch_size: int = 256
) -> np.ndarray:
    """``(n, T)`` predictions in original units for a ``CrystalDataset`` (or ``Subset``), in item order."""
    table = GraphTable.from_dataset(dataset, line_graph=model.needs_line_graph)
    return predict_table(model, normalizer, table, batch_size)
