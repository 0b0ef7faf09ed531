"""Crystal graphs: neighbour sets against pymatgen, the tie / fewer-than-k / isolated-atom policies,
invariance to site order and translation, and PyG conversion and batching."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from hybridmat.features.atom_features import atom_features
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.graph import (
    TIE_TOL,
    CrystalGraph,
    GaussianBasis,
    build_crystal_graph,
    gaussian_expansion,
)
from hybridmat.features.pyg import to_pyg

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def diamond_si() -> Structure:
    conventional = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    return conventional.get_primitive_structure()


def bcc_fe() -> Structure:
    """Conventional bcc cell: 8 neighbours at a*sqrt(3)/2, then 6 at a, so k=12 cuts through a shell."""
    return Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def simple_cubic(a: float = 3.0) -> Structure:
    return Structure(Lattice.cubic(a), ["Po"], [[0, 0, 0]])


def triclinic() -> Structure:
    rng = np.random.default_rng(7)
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 78.0, 96.0, 107.0)
    return Structure(lattice, ["Li", "Mn", "O", "O", "P", "O", "O"], rng.random((7, 3)))


STRUCTURES = {
    "nacl": rocksalt,
    "si": diamond_si,
    "bcc_fe": bcc_fe,
    "one_atom": simple_cubic,
    "triclinic": triclinic,
}
EdgeKey = tuple[int, int, tuple[int, ...]]


def reference_edges(structure: Structure, cutoff: float, k: int) -> dict[EdgeKey, float]:
    """The documented policy, applied per atom to pymatgen's neighbour list: {(i, j, image): distance}."""
    centre, neighbor, images, dist = structure.get_neighbor_list(r=cutoff)
    edges = {}
    for i in range(len(structure)):
        mine = np.flatnonzero(centre == i)
        d_sorted = np.sort(dist[mine])
        limit = d_sorted[k - 1] + TIE_TOL if len(mine) >= k else np.inf
        for e in mine[dist[mine] <= limit]:
            edges[(i, int(neighbor[e]), tuple(int(x) for x in np.round(images[e])))] = float(dist[e])
    return edges


def graph_edges(graph: CrystalGraph) -> dict[EdgeKey, float]:
    src, dst = graph.edge_index
    return {
        (int(i), int(j), tuple(int(x) for x in img)): float(d)
        for j, i, img, d in zip(src, dst, graph.edge_image, graph.distances)
    }


def assert_matches_pymatgen(structure: Structure, cutoff: float = 8.0, k: int = 12) -> None:
    graph = build_crystal_graph(structure, cutoff=cutoff, max_neighbors=k)
    ours, ref = graph_edges(graph), reference_edges(structure, cutoff, k)
    assert ours.keys() == ref.keys()
    np.testing.assert_allclose([ours[e] for e in ref], list(ref.values()), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize(("cutoff", "k"), [(8.0, 12), (8.0, 4), (3.0, 12)])
def test_neighbours_match_pymatgen(name: str, cutoff: float, k: int) -> None:
    assert_matches_pymatgen(STRUCTURES[name](), cutoff, k)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_fields_and_edge_vectors(name: str) -> None:
    structure = STRUCTURES[name]()
    graph = build_crystal_graph(structure)
    assert graph.atomic_numbers.dtype == np.int64 and graph.atomic_numbers.shape == (len(structure),)
    assert graph.edge_index.dtype == np.int64 and graph.edge_index.shape == (2, graph.num_edges)
    assert graph.edge_vec.dtype == np.float32 and graph.edge_vec.shape == (graph.num_edges, 3)
    assert graph.edge_image.dtype == np.int8 and graph.edge_image.shape == (graph.num_edges, 3)
    assert graph.distances.dtype == np.float32
    src, dst = graph.edge_index
    cart = structure.cart_coords
    expected = cart[src] + graph.edge_image @ structure.lattice.matrix - cart[dst]
    np.testing.assert_allclose(graph.edge_vec, expected, atol=1e-5)
    assert np.all(np.diff(dst) >= 0), "edges are grouped by centre"
    assert not np.any((src == dst) & ~graph.edge_image.any(axis=1)), "no self pair"


def test_tie_at_kth_place_keeps_whole_shell() -> None:
    graph = build_crystal_graph(bcc_fe(), max_neighbors=12)
    assert np.bincount(graph.edge_index[1]).tolist() == [14, 14]  # 8 at 2.485 Å + all 6 at 2.87 Å
    assert np.bincount(build_crystal_graph(bcc_fe(), max_neighbors=8).edge_index[1]).tolist() == [8, 8]
    assert np.bincount(build_crystal_graph(bcc_fe(), max_neighbors=9).edge_index[1]).tolist() == [14, 14]


def test_tie_tolerance_absorbs_noise_but_not_real_gaps() -> None:
    base = simple_cubic()
    near = Structure(Lattice.orthorhombic(3.0, 3.0, 3.0 + TIE_TOL / 4), ["Po"], [[0, 0, 0]])
    far = Structure(Lattice.orthorhombic(3.0, 3.0, 3.0 + 10 * TIE_TOL), ["Po"], [[0, 0, 0]])
    assert build_crystal_graph(base, max_neighbors=4).num_edges == 6
    assert build_crystal_graph(near, max_neighbors=4).num_edges == 6
    assert build_crystal_graph(far, max_neighbors=4).num_edges == 4


def test_one_atom_cell_uses_its_own_images() -> None:
    graph = build_crystal_graph(simple_cubic(3.0))
    assert graph.num_nodes == 1 and graph.num_edges == 18  # 6 at 3 Å + 12 at 4.24 Å (tie at 12th)
    assert not graph.edge_index.any() and graph.edge_image.any(axis=1).all()
    np.testing.assert_allclose(np.sort(graph.distances), [3.0] * 6 + [3.0 * 2**0.5] * 12, atol=1e-5)


def test_fewer_than_k_neighbours_are_not_padded() -> None:
    graph = build_crystal_graph(rocksalt(), cutoff=3.0, max_neighbors=12)
    assert np.bincount(graph.edge_index[1]).tolist() == [6] * 8
    assert np.all(graph.atomic_numbers[graph.edge_index[0]] != graph.atomic_numbers[graph.edge_index[1]])
    np.testing.assert_allclose(graph.distances, 2.82, atol=1e-5)


def test_isolated_atom_keeps_its_node() -> None:
    box = Structure(Lattice.cubic(12.0), ["Ar", "Ar"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # 10.4 Å apart
    graph = build_crystal_graph(box, cutoff=8.0)
    assert graph.num_nodes == 2 and graph.num_edges == 0
    data = to_pyg(graph, line_graph=True)
    assert data.num_nodes == 2 and data.edge_attr.shape == (0, 41) and data.line_edge_index.shape == (2, 0)


def test_molecule_in_vacuum_falls_back_to_full_cutoff() -> None:
    """Dense local clusters in a sparse cell defeat the small first search; the result stays exact."""
    co2 = [[0.5, 0.5, 0.5], [0.5, 0.5, 0.37], [0.5, 0.5, 0.63]]
    box = Structure(Lattice.cubic(9.0), ["C", "O", "O"], co2)
    assert_matches_pymatgen(box)


def _multiset(graph: CrystalGraph) -> Counter:
    z, (src, dst) = graph.atomic_numbers, graph.edge_index
    return Counter(zip(z[dst].tolist(), z[src].tolist(), np.round(graph.distances, 4).tolist()))


@pytest.mark.parametrize("name", ["bcc_fe", "triclinic", "nacl"])
def test_invariant_to_site_order_and_translation(name: str) -> None:
    structure = STRUCTURES[name]()
    graph = build_crystal_graph(structure)
    degree = np.bincount(graph.edge_index[1], minlength=len(structure))

    perm = np.random.default_rng(0).permutation(len(structure))
    permuted = Structure(structure.lattice, [structure[i].species for i in perm], structure.frac_coords[perm])
    shifted = structure.copy()
    shifted.translate_sites(list(range(len(structure))), [0.731, -1.29, 2.05], frac_coords=False)

    for other, order in ((permuted, perm), (shifted, np.arange(len(structure)))):
        other_graph = build_crystal_graph(other)
        assert _multiset(other_graph) == _multiset(graph)
        other_degree = np.bincount(other_graph.edge_index[1], minlength=len(structure))
        np.testing.assert_array_equal(other_degree, degree[order])


def test_disordered_structure_is_rejected() -> None:
    alloy = Structure(Lattice.cubic(3.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    with pytest.raises(ValueError, match="ordered structure"):
        build_crystal_graph(alloy)


def test_image_overflow_is_rejected() -> None:
    sheet = Structure(Lattice.orthorhombic(10.0, 10.0, 0.05), ["H"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="above 127"):
        build_crystal_graph(sheet, max_neighbors=300)


def test_gaussian_expansion() -> None:
    d = np.array([0.0, 2.0, 7.9], dtype=np.float32)
    basis = gaussian_expansion(d)
    assert basis.shape == (3, 41) and basis.dtype == np.float32
    assert basis[1].argmax() == 10 and basis[1, 10] == pytest.approx(1.0)
    assert basis[1, 11] == pytest.approx(np.exp(-1.0))  # width = step: one step away gives exp(-1)
    assert gaussian_expansion(d, width=0.4)[1, 11] == pytest.approx(np.exp(-0.25))
    tensor = gaussian_expansion(torch.from_numpy(d))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), basis, atol=1e-6)


def test_to_pyg_fields() -> None:
    graph = build_crystal_graph(rocksalt())
    data = to_pyg(graph)
    assert data.num_nodes == 8 and data.x.shape == (8, 92) and data.x.dtype == torch.float32
    np.testing.assert_array_equal(data.x.numpy(), atom_features(graph.atomic_numbers))
    assert data.atomic_numbers.dtype == torch.int64 and data.edge_index.dtype == torch.int64
    assert data.edge_attr.shape == (graph.num_edges, 41) and data.edge_attr.dtype == torch.float32
    np.testing.assert_array_equal(data.edge_vec.numpy(), graph.edge_vec)
    assert "line_edge_index" not in data


def test_batch_indexes_line_graphs() -> None:
    graphs = [
        build_crystal_graph(diamond_si(), max_neighbors=4),
        build_crystal_graph(rocksalt(), max_neighbors=6),
    ]
    items = [to_pyg(g, line_graph=True) for g in graphs]
    batch = Batch.from_data_list(items)
    n_edges = [g.num_edges for g in graphs]
    assert batch.edge_index.shape[1] == sum(n_edges) and batch.num_nodes == 10
    second = batch.line_edge_index[:, items[0].line_edge_index.shape[1] :]
    torch.testing.assert_close(second, items[1].line_edge_index + n_edges[0])
    e1, e2 = batch.line_edge_index
    assert torch.equal(batch.edge_index[1, e1], batch.edge_index[0, e2])  # target(e1) == source(e2)
    u, w = batch.edge_vec[e1], -batch.edge_vec[e2]
    torch.testing.assert_close(torch.cosine_similarity(u, w, dim=1), batch.angle_cos, atol=1e-5, rtol=0)


@pytest.mark.integration
def test_real_structures_match_pymatgen() -> None:
    path = SHARED_DATA / "mp_cgcnn36k" / "mp_cgcnn36k.parquet"
    if not path.exists():
        pytest.skip(f"shared dataset not found at {path}")
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["id", "structure"])
    rows = np.linspace(0, table.num_rows - 1, 200).astype(int)
    ids, blobs = table.column("id").take(rows).to_pylist(), table.column("structure").take(rows).to_pylist()
    for material_id, blob in zip(ids, blobs):
        structure = Structure.from_dict(json.loads(blob))
        graph = build_crystal_graph(structure)
        ours, ref = graph_edges(graph), reference_edges(structure, 8.0, 12)
        assert ours.keys() == ref.keys(), material_id
        np.testing.assert_allclose(
            [ours[e] for e in ref], list(ref.values()), atol=1e-5, rtol=0, err_msg=material_id
        )


def test_default_edge_basis_is_the_fixed_cgcnn_basis_bit_for_bit() -> None:
    d = np.linspace(0.0, 9.0, 101, dtype=np.float32)
    default = GaussianBasis()
    assert default.size == 41 == FeaturizerSettings().edge_basis.size
    np.testing.assert_array_equal(default.expand(d), gaussian_expansion(d))
    centres = np.linspace(0.0, 8.0, 41, dtype=np.float32)
    np.testing.assert_array_equal(default.expand(d), np.exp(-(((d[:, None] - centres) / np.float32(0.2)) ** 2)))


def test_edge_basis_follows_the_cutoff_so_long_bonds_keep_their_length() -> None:
    settings = FeaturizerSettings(cutoff=10.0)
    assert settings.edge_basis == GaussianBasis(10.0, 0.2) and settings.edge_basis.size == 51
    assert settings.as_dict()["edge_basis_stop"] == 10.0
    bonds = np.array([8.0, 9.0, 10.0], dtype=np.float32)
    assert settings.edge_basis.expand(bonds).argmax(axis=1).tolist() == [40, 45, 50]
    assert GaussianBasis().expand(bonds).argmax(axis=1).tolist() == [40, 40, 40]  # the old flattening
    assert FeaturizerSettings(cutoff=10.0, edge_basis_stop=6.0).edge_basis.size == 31  # a named setting too


def test_settings_without_basis_fields_read_as_the_old_fixed_basis() -> None:
    old = {"composition": "magpie", "cutoff": 10.0, "max_neighbors": 12}  # written before the basis was a setting
    assert FeaturizerSettings.from_dict(old).edge_basis == GaussianBasis(8.0, 0.2)
    fresh = FeaturizerSettings(cutoff=10.0)
    assert FeaturizerSettings.from_dict(fresh.as_dict()) == fresh


@pytest.mark.parametrize("stop, step", [(8.0, 0.0), (0.1, 0.2), (8.0, -0.2)])
def test_impossible_edge_basis_is_refused(stop: float, step: float) -> None:
    with pytest.raises(ValueError, match="edge basis"):
        FeaturizerSettings(edge_basis_stop=stop, edge_basis_step=step)


def test_to_pyg_uses_the_given_basis() -> None:
    graph = build_crystal_graph(rocksalt(), cutoff=10.0)
    basis = FeaturizerSettings(cutoff=10.0).edge_basis
    data = to_pyg(graph, edge_basis=basis)
    assert data.edge_attr.shape == (graph.num_edges, 51)
    np.testing.assert_array_equal(data.edge_attr.numpy(), basis.expand(graph.distances))
