"""ALIGNN line graphs: known bond angles, periodic images, reverse-pair exclusion, brute-force agreement."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from hybridmat.features.graph import CrystalGraph, build_crystal_graph
from hybridmat.features.line_graph import LineGraph, angle_rbf, build_line_graph
from hybridmat.features.pyg import to_pyg


def diamond_si() -> Structure:
    conventional = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    return conventional.get_primitive_structure()


def srtio3(a: float = 3.905) -> Structure:
    return Structure(
        Lattice.cubic(a),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def triclinic() -> Structure:
    rng = np.random.default_rng(11)
    lattice = Lattice.from_parameters(3.9, 4.6, 5.2, 81.0, 99.0, 112.0)
    return Structure(lattice, ["Na", "Fe", "O", "O", "S"], rng.random((5, 3)))


def angle_pairs(graph: CrystalGraph, z_ends: int, z_centre: int, max_bond: float) -> np.ndarray:
    """cos of every line-graph angle end-centre-end with both bonds shorter than ``max_bond``."""
    lg = build_line_graph(graph)
    e1, e2 = lg.edge_index
    src, dst = graph.edge_index
    z, d = graph.atomic_numbers, graph.distances
    mask = (z[src[e1]] == z_ends) & (z[dst[e1]] == z_centre) & (z[dst[e2]] == z_ends)
    mask &= (d[e1] < max_bond) & (d[e2] < max_bond)
    return lg.cos_angle[mask]


def test_fields() -> None:
    lg = build_line_graph(build_crystal_graph(triclinic()))
    assert lg.edge_index.dtype == np.int64 and lg.edge_index.shape[0] == 2
    assert lg.cos_angle.dtype == np.float32 and lg.cos_angle.shape == (lg.edge_index.shape[1],)
    assert np.all(np.abs(lg.cos_angle) <= 1.0)


def test_diamond_tetrahedral_angle() -> None:
    graph = build_crystal_graph(diamond_si(), max_neighbors=4)
    lg = build_line_graph(graph)
    assert lg.edge_index.shape[1] == 2 * 4 * 3  # each bond meets the 3 other bonds of its atom
    np.testing.assert_allclose(lg.cos_angle, -1 / 3, atol=1e-6)
    # With the default k = 12 the nearest-neighbour pairs still give exactly 109.47 degrees.
    nn = angle_pairs(build_crystal_graph(diamond_si()), 14, 14, max_bond=2.4)
    assert nn.size == 24
    np.testing.assert_allclose(np.degrees(np.arccos(nn)), 109.4712206, atol=1e-4)


def test_perovskite_octahedron_and_linear_links() -> None:
    graph = build_crystal_graph(srtio3())
    o_ti_o = angle_pairs(graph, 8, 22, max_bond=2.0)
    assert sorted(np.round(o_ti_o, 5).tolist()) == [-1.0] * 6 + [0.0] * 24  # 4 x 90 + 1 x 180 per bond
    ti_o_ti = angle_pairs(graph, 22, 8, max_bond=2.0)  # Ti and its own periodic image around each O
    np.testing.assert_allclose(ti_o_ti, -1.0, atol=1e-6)
    assert ti_o_ti.size == 3 * 2


def test_angles_between_periodic_images_of_one_atom() -> None:
    graph = build_crystal_graph(Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]]), max_neighbors=6)
    lg = build_line_graph(graph)
    assert lg.edge_index.shape[1] == 6 * 5  # own reverse excluded, the other 5 images kept
    assert sorted(np.round(lg.cos_angle, 6).tolist()) == [-1.0] * 6 + [0.0] * 24


def test_reverse_pairs_excluded_and_nothing_else() -> None:
    graph = build_crystal_graph(triclinic())
    lg = build_line_graph(graph)
    src, dst = graph.edge_index
    e1, e2 = lg.edge_index
    assert np.all(dst[e1] == src[e2])
    is_reverse = (src[e1] == dst[e2]) & np.all(graph.edge_image[e1] == -graph.edge_image[e2], axis=1)
    assert not is_reverse.any()
    keys = {(int(j), int(i), tuple(img)) for j, i, img in zip(src, dst, graph.edge_image.tolist())}
    n_reversible = sum((i, j, tuple(-x for x in img)) in keys for j, i, img in keys)
    assert lg.edge_index.shape[1] == np.bincount(dst, minlength=graph.num_nodes)[src].sum() - n_reversible


def test_matches_brute_force_from_absolute_positions() -> None:
    """Rebuild pairs with a double loop and angles from absolute image positions."""
    structure = triclinic()
    graph = build_crystal_graph(structure)
    cart, lattice = structure.cart_coords, structure.lattice.matrix
    src, dst = graph.edge_index
    expected = {}
    for a in range(graph.num_edges):  # a = (k -> j)
        for b in range(graph.num_edges):  # b = (j -> i)
            if dst[a] != src[b]:
                continue
            if src[a] == dst[b] and np.all(graph.edge_image[a] == -graph.edge_image[b]):
                continue
            j_pos = cart[src[b]] + graph.edge_image[b] @ lattice  # the image of j bonded to i
            k_pos = cart[src[a]] + (graph.edge_image[a] + graph.edge_image[b]) @ lattice
            u, w = k_pos - j_pos, cart[dst[b]] - j_pos
            expected[(a, b)] = u @ w / np.linalg.norm(u) / np.linalg.norm(w)
    lg = build_line_graph(graph)
    got = dict(zip(map(tuple, lg.edge_index.T.tolist()), lg.cos_angle.tolist()))
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[p] for p in expected], list(expected.values()), atol=1e-5)


def test_angle_rbf() -> None:
    cos = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    basis = angle_rbf(cos)
    assert basis.shape == (3, 40) and basis.dtype == np.float32
    assert basis[0].argmax() == 0 and basis[2].argmax() == 39
    assert basis[0, 1] == pytest.approx(np.exp(-1.0))  # width defaults to the centre spacing
    assert angle_rbf(cos, n=9).shape == (3, 9)
    np.testing.assert_allclose(angle_rbf(torch.from_numpy(cos)).numpy(), basis, atol=1e-6)


def _angles_by_pair(lg: LineGraph, edge_ids: np.ndarray) -> dict[tuple[int, int], float]:
    return dict(zip(map(tuple, edge_ids[lg.edge_index].T.tolist()), lg.cos_angle.tolist()))


def test_edge_order_does_not_matter() -> None:
    """A graph whose edges are not grouped by target (e.g. rebuilt elsewhere) gives the same pairs."""
    graph = build_crystal_graph(triclinic())
    perm = np.random.default_rng(3).permutation(graph.num_edges)
    shuffled = CrystalGraph(
        atomic_numbers=graph.atomic_numbers,
        edge_index=graph.edge_index[:, perm],
        edge_vec=graph.edge_vec[perm],
        edge_image=graph.edge_image[perm],
    )
    want = _angles_by_pair(build_line_graph(graph), np.arange(graph.num_edges))
    have = _angles_by_pair(build_line_graph(shuffled), perm)
    assert have.keys() == want.keys()
    np.testing.assert_allclose([have[k] for k in want], list(want.values()), atol=1e-6)


def test_read_only_arrays() -> None:
    """Graphs rebuilt from a store may hold read-only buffers: no copy warnings, same result."""
    graph = build_crystal_graph(srtio3())
    expected = build_line_graph(graph)
    for array in (graph.atomic_numbers, graph.edge_index, graph.edge_vec, graph.edge_image):
        array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = to_pyg(graph, line_graph=True)
    np.testing.assert_array_equal(data.line_edge_index.numpy(), expected.edge_index)
