"""ALIGNN line graphs: bonds become nodes, and bond pairs sharing an atom carry the bond angle.

Convention (Choudhary & DeCost, npj Comput. Mater. 7, 185, 2021, in our PyG edge direction)
---------------------------------------------------------------------------------------------
A :class:`~hybridmat.features.graph.CrystalGraph` edge ``e = (j -> i)`` has source ``j`` (neighbour),
target ``i`` (centre) and ``edge_vec[e] = r_j + image - r_i``, the vector from the centre to the
neighbour's image. The line graph has one node per edge and an edge ``(e1 -> e2)`` for every pair
with ``target(e1) == source(e2)``: ``e1 = (k -> j)`` followed by ``e2 = (j -> i)``, so messages keep
flowing ``k -> j -> i`` as in ALIGNN's ``g.line_graph(shared=True)`` on its ``src -> dst`` edges.
``line_edge_index[0]`` is ``e1`` and ``line_edge_index[1]`` is ``e2``; both index graph edges.
Our k-nearest-neighbour graph is directed (ALIGNN's is symmetrised), so the angle k-j-i appears
exactly when ``k`` is among the neighbours of ``j`` and ``j`` among the neighbours of ``i``.

The angle is the one at the shared atom ``j``, between the bonds to ``k`` and to ``i``::

    u = edge_vec[e1]            # j -> image of k (e1 is stored relative to its target j)
    w = -edge_vec[e2]           # j -> i          (e2 is stored relative to its target i)
    cos_angle = u . w / (|u| |w|)

Both vectors are relative displacements, so the angle is correct whichever periodic image of ``j``
the bond ``e2`` used: no absolute positions enter.

**Excluded pair.** ``e1`` and ``e2`` describing the same bond in opposite directions
(``source(e1) == target(e2)`` and ``image(e1) == -image(e2)``, i.e. ``k`` is ``i`` itself) would give
a degenerate angle of 0 (cos = 1); such pairs are dropped. ALIGNN's DGL line graph keeps them
(``backtracking=True``). Pairs with ``k == i`` but another image of ``i`` are real angles and kept.

The number of line-graph edges is ``sum_e2 indeg(source(e2))`` less the excluded pairs (about
``k^2`` per atom), built with ``np.repeat`` over edges grouped by target: no per-edge Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hybridmat.features.graph import gaussian_expansion

_IMAGE_PACK = np.array([1 << 16, 1 << 8, 1], dtype=np.int32)

if TYPE_CHECKING:
    import torch

    from hybridmat.features.graph import CrystalGraph


@dataclass(frozen=True, eq=False)
class LineGraph:
    """Bond-pair graph of a crystal graph.

    Attributes:
        edge_index: ``(2, T)`` int64 indices into the crystal graph's edges; row 0 = ``e1 = (k -> j)``,
            row 1 = ``e2 = (j -> i)``.
        cos_angle: ``(T,)`` float32 cosine of the angle k-j-i at the shared atom ``j``.
    """

    edge_index: np.ndarray
    cos_angle: np.ndarray


def build_line_graph(graph: CrystalGraph) -> LineGraph:
    """All pairs ``(e1, e2)`` with ``target(e1) == source(e2)``, minus each bond with its own reverse."""
    src, dst = graph.edge_index
    in_degree = np.bincount(dst, minlength=graph.num_nodes)
    in_start = np.cumsum(in_degree) - in_degree

    n_pairs = in_degree[src]  # e2 = (j -> i) pairs with every edge arriving at j
    n_total = int(n_pairs.sum())
    e2 = np.repeat(np.arange(src.shape[0], dtype=np.int64), n_pairs)
    e1 = np.repeat(in_start[src] - (np.cumsum(n_pairs) - n_pairs), n_pairs)
    e1 += np.arange(n_total, dtype=np.int64)  # position among the edges sorted by target
    if not np.all(dst[:-1] <= dst[1:]):  # build_crystal_graph already sorts edges by target
        e1 = np.argsort(dst, kind="stable")[e1]

    # Unit vectors laid out (3, E) so each component is gathered as one contiguous 1-D take.
    unit = np.ascontiguousarray((graph.edge_vec / graph.distances[:, None]).T)
    cos = -np.einsum("ij,ij->j", np.take(unit, e1, axis=1), np.take(unit, e2, axis=1))

    # A bond paired with its own reverse has cos = 1 up to rounding; confirm candidates exactly:
    # same two atoms and opposite images (the packed code is injective and odd for |image| <= 127).
    near_one = np.flatnonzero(cos > 1.0 - 1e-4)
    a, b = e1[near_one], e2[near_one]
    code = graph.edge_image.astype(np.int32) @ _IMAGE_PACK
    keep = np.ones(n_total, dtype=bool)
    keep[near_one[(src[a] == dst[b]) & (code[a] == -code[b])]] = False
    edge_index = np.empty((2, int(keep.sum())), dtype=np.int64)
    np.compress(keep, e1, out=edge_index[0])
    np.compress(keep, e2, out=edge_index[1])
    cos = cos.compress(keep)
    return LineGraph(edge_index=edge_index, cos_angle=np.clip(cos, -1.0, 1.0, out=cos))


def angle_rbf(
    cos: np.ndarray | torch.Tensor, n: int = 40, width: float | None = None
) -> np.ndarray | torch.Tensor:
    """Gaussian basis on ``cos`` in [-1, 1]: ``n`` evenly spaced centres from -1 to 1.

    ``width`` defaults to the centre spacing ``2 / (n - 1)`` (the CGCNN distance convention:
    ``exp(-(cos - c)^2 / width^2)``). ALIGNN's ``RBFExpansion(-1, 1, 40)`` uses
    ``exp(-(cos - c)^2 / spacing)``, which is ``width = sqrt(spacing)`` here. Returns ``(T, n)``
    float32 (or a tensor for tensor input).
    """
    step = 2.0 / (n - 1)
    return gaussian_expansion(cos, start=-1.0, stop=1.0, step=step, width=width)
