"""Magpie element-property table as a dense array indexed by atomic number, and batch encoding.

matminer's ``MagpieData`` is read once per ``impute_nan`` setting and turned into a
``(MAX_Z + 1, n_properties)`` float64 array whose row ``z`` holds element ``z`` (row 0 is padding).
Compositions are encoded into padded ``(n_compositions, max_elements)`` arrays of atomic numbers
and element amounts, so featurizers compute every statistic with numpy over the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from matminer.utils.data import MagpieData
from pymatgen.core import Composition, DummySpecies, Element

MAX_Z = 118


class UnsupportedElementError(ValueError):
    """A composition holds an element or species that the Magpie table cannot featurize."""


@dataclass(frozen=True)
class ElementTable:
    """Dense element × property table.

    ``values[z, j]`` is property ``properties[j]`` of the element with atomic number ``z``;
    ``has_data[z]`` is False for row 0 and for elements with no Magpie value at all (Z > 112).
    """

    properties: tuple[str, ...]
    values: np.ndarray
    has_data: np.ndarray

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """``(MAX_Z + 1, len(names))`` sub-table with the given properties in that order."""
        index = {name: j for j, name in enumerate(self.properties)}
        return self.values[:, [index[name] for name in names]]


def _read_magpie(impute_nan: bool) -> tuple[tuple[str, ...], np.ndarray]:
    """All scalar Magpie properties as ``(names, (MAX_Z + 1, n) array)``, imputed as matminer does."""
    data = MagpieData(impute_nan=impute_nan)
    names = tuple(sorted(p for p in data.all_elemental_props if p != "OxidationStates"))
    values = np.full((MAX_Z + 1, len(names)), np.nan)
    for j, name in enumerate(names):
        column = data.all_elemental_props[name]
        values[1:, j] = [column[Element.from_Z(z).symbol] for z in range(1, MAX_Z + 1)]
    return names, values


@cache
def magpie_table(impute_nan: bool = True) -> ElementTable:
    """Magpie element data (matminer's ``MagpieData(impute_nan)``) as a cached dense table.

    With ``impute_nan=True`` (matminer's default) missing values are the mean of the property
    over all elements, so the table holds no NaN; with False they stay NaN and propagate.
    """
    names, raw = _read_magpie(impute_nan=False)
    has_data = ~np.all(np.isnan(raw), axis=1)
    values = _read_magpie(impute_nan=True)[1] if impute_nan else raw
    values.setflags(write=False)
    has_data.setflags(write=False)
    return ElementTable(properties=names, values=values, has_data=has_data)


class _ZBySymbol(dict):
    """Element symbol → atomic number; unknown symbols (dummy species) map to 0, i.e. padding."""

    def __missing__(self, key: str) -> int:
        return 0


@cache
def _z_by_symbol() -> _ZBySymbol:
    return _ZBySymbol({el.symbol: el.Z for el in Element})


def unsupported_reason(composition: Composition, table: ElementTable) -> str | None:
    """Why ``composition`` cannot be featurized with ``table`` (None when it can)."""
    if len(composition) == 0:
        return "empty composition: it has no elements"
    for species in composition:
        if isinstance(species, DummySpecies):
            return f"species {species} is a DummySpecies, not an element; replace it by a real element"
        z = species.Z
        if not 0 < z < len(table.has_data) or not table.has_data[z]:
            return f"element {species.symbol} (Z={z}) has no Magpie data"
    return None


@dataclass(frozen=True)
class CompositionBatch:
    """Padded encoding of ``n`` compositions with at most ``k`` elements each.

    ``z`` (n, k) int64 atomic numbers, ``amounts`` (n, k) float64 element amounts (species of one
    element summed, order of first appearance as in ``Composition.element_composition``),
    ``mask`` (n, k) bool marking real slots; padding slots hold z=0 and amount 0.
    """

    z: np.ndarray
    amounts: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return len(self.z)

    @property
    def n_elements(self) -> np.ndarray:
        """(n,) number of elements of each composition."""
        return self.mask.sum(axis=1)

    def rows(self, start: int, stop: int) -> CompositionBatch:
        """The sub-batch of rows ``start:stop``."""
        return CompositionBatch(self.z[start:stop], self.amounts[start:stop], self.mask[start:stop])


def encode_compositions(compositions: Sequence[Composition], table: ElementTable) -> CompositionBatch:
    """Encode compositions into a :class:`CompositionBatch` with one vectorised scatter.

    Raises:
        UnsupportedElementError: a composition is empty or holds an element without Magpie data,
            a DummySpecies, or anything else outside the table.
    """
    z_of = _z_by_symbol()
    counts: list[int] = []
    zs: list[int] = []
    amounts: list[float] = []
    for comp in compositions:
        el_amt = comp.get_el_amt_dict()
        counts.append(len(el_amt))
        zs.extend(map(z_of.__getitem__, el_amt))
        amounts.extend(el_amt.values())

    n = len(counts)
    count = np.asarray(counts, dtype=np.int64)
    k = int(count.max(initial=1))
    rows = np.repeat(np.arange(n), count)
    slots = np.arange(len(zs)) - np.repeat(np.cumsum(count) - count, count)
    z = np.zeros((n, k), dtype=np.int64)
    amount = np.zeros((n, k))
    z[rows, slots] = zs
    amount[rows, slots] = amounts
    mask = np.arange(k) < count[:, None]

    bad = (count == 0) | np.any(mask & ~table.has_data[z], axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        formula = " ".join(f"{species}{amount:g}" for species, amount in compositions[i].items())
        reason = unsupported_reason(compositions[i], table)
        raise UnsupportedElementError(
            f"composition {i} ({formula}): {reason}. Check unsupported_reason() "
            "before featurizing and route such rows to the error table."
        )
    return CompositionBatch(z=z, amounts=amount, mask=mask)
