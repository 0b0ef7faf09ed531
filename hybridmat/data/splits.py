"""Train/validation/test splits: canonical ones from ``splits.json``, seeded random ones, Matbench folds."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Split names, in the order their fractions are given.
SPLIT_NAMES = ("train", "val", "test")
#: Matbench v0.1's fold settings (``matbench_v0.1_validation.json`` metadata).
MATBENCH_N_FOLDS = 5
MATBENCH_SEED = 18012019


def load_splits(path: str | os.PathLike[str], name: str) -> dict[str, list[str]]:
    """The split ``name`` (e.g. ``"full"``, ``"cpu_small"``) of a ``splits.json``: ``{"train": [...], ...}``.

    Raises ``FileNotFoundError`` for a missing file, ``KeyError`` naming the available splits for an
    unknown ``name``, and ``ValueError`` when the split's parts are not id lists or share an id.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    document = json.loads(path.read_text())
    available = sorted(key for key, value in document.items() if isinstance(value, dict))
    if name not in available:
        raise KeyError(f"{path} has no split {name!r}; available: {available}")
    split = document[name]
    owner: dict[str, str] = {}
    for part, ids in split.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{path}: split {name!r} part {part!r} is not a list of id strings")
        for record_id in ids:
            if record_id in owner:
                raise ValueError(
                    f"{path}: split {name!r}: id {record_id!r} is in both {owner[record_id]!r} and {part!r}"
                )
            owner[record_id] = part
    return {part: list(ids) for part, ids in split.items()}


def random_split(
    ids: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[str]]:
    """Seeded random ``train``/``val``/``test`` split (two fractions: ``train``/``test``).

    Sizes are exact: every part after the first gets ``floor(fraction * n)`` ids and ``train`` the rest.
    The ids are permuted with ``numpy.random.default_rng(seed).permutation`` and the parts taken from the
    front in reverse order (test, then val, then train), each in permuted order. This reproduces the
    ``full`` split of ``mp_cgcnn36k/splits.json`` exactly from the file's id order and seed 20261127.
    Raises ``ValueError`` for duplicate ids or fractions that are negative or do not sum to 1.
    """
    if len(fractions) not in (2, 3):
        raise ValueError(f"give 2 (train, test) or 3 (train, val, test) fractions, got {list(fractions)}")
    if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    ids = list(ids)
    if len(set(ids)) != len(ids):
        raise ValueError("ids contain duplicates; de-duplicate them before splitting")
    names = SPLIT_NAMES if len(fractions) == 3 else ("train", "test")
    sizes = [math.floor(f * len(ids) + 1e-9) for f in fractions[1:]]
    order = np.random.default_rng(seed).permutation(len(ids))
    parts: dict[str, list[str]] = {}
    start = 0
    for name, size in zip(reversed(names[1:]), reversed(sizes), strict=True):
        parts[name] = [ids[i] for i in order[start : start + size]]
        start += size
    parts["train"] = [ids[i] for i in order[start:]]
    return {name: parts[name] for name in names}


def kfold_splits(
    ids: Sequence[str], n_folds: int = MATBENCH_N_FOLDS, seed: int = MATBENCH_SEED
) -> list[dict[str, list[str]]]:
    """Matbench's cross-validation folds: ``[{"train": [...], "test": [...]}, ...]``, one per fold.

    This is scikit-learn's ``KFold(n_splits=n_folds, shuffle=True, random_state=seed)`` over ``ids`` in
    the given order, each part in input order, which is how Matbench v0.1 made the folds of its
    regression tasks (pass ids ``mb-<task>-<n>`` in dataset order to get them back). Matbench's
    classification tasks used stratified folds, so use ``MatbenchSource`` (matbench's stored folds) for
    those.
    """
    from sklearn.model_selection import KFold

    ids = list(ids)
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(ids)
    return [{"train": [ids[i] for i in train], "test": [ids[i] for i in test]} for train, test in folds]
