"""CGCNN (Xie & Grossman, PRL 120, 145301, 2018): atom embedding, gated graph convolutions, mean pooling.

:class:`CGCNNEncoder` maps plain graph tensors to one ``(B, hidden)`` vector per crystal; :class:`CGCNN`
adds the regression head. The fusion and multi-task models reuse the encoder (same parameter names
under ``encoder.``), so a trained trunk can be loaded into them.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from hybridmat.features.atom_features import N_ATOM_FEATURES
from hybridmat.features.graph import GaussianBasis
from hybridmat.models.base import NonNegativeInt, PositiveInt, PropertyModel, register
from hybridmat.models.layers import CGConv

#: Width of ``edge_attr`` with the default edge basis (41: 0-8 Å, step 0.2 Å); training builds a model with its
#: featurizer settings' ``edge_basis.size``.
EDGE_DIM = GaussianBasis().size


def softplus_mlp(in_dim: int, hidden: int, out_dim: int, n_hidden: int = 1) -> nn.Sequential:
    """``n_hidden`` × (Linear → softplus) then a Linear to ``out_dim``: CGCNN's head (``n_h`` layers)."""
    if n_hidden < 1:
        raise ValueError(f"an MLP head needs at least one hidden layer, got n_hidden={n_hidden}")
    layers: list[nn.Module] = []
    for i in range(n_hidden):
        layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.Softplus()]
    layers.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*layers)


class CGCNNEncoder(nn.Module):
    r"""Crystal graph → pooled embedding.

    .. math:: \mathbf{h}_G = \mathrm{mean}_{i \in G}\, \mathrm{CGConv}^{n}(\mathbf{x} W_e + \mathbf{b}_e)_i

    Args:
        hidden: atom feature width in the convolutions (CGCNN ``atom_fea_len``).
        n_conv: number of :class:`~hybridmat.models.layers.CGConv` layers.
        atom_dim: input atom feature width (92).
        edge_dim: input bond feature width, the edge basis' ``size`` (41 by default).

    Shapes:
        - **input:** ``x`` (N, atom_dim), ``edge_index`` (2, E), ``edge_attr`` (E, edge_dim),
          ``batch`` (N,) graph index of each atom, ``num_graphs`` B
        - **output:** (B, hidden)
    """

    def __init__(self, hidden: int = 64, n_conv: int = 3, atom_dim: int = N_ATOM_FEATURES,
                 edge_dim: int = EDGE_DIM) -> None:
        super().__init__()
        self.hidden = hidden
        self.embedding = nn.Linear(atom_dim, hidden)
        self.convs = nn.ModuleList(CGConv(hidden, edge_dim) for _ in range(n_conv))

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, num_graphs: int
    ) -> Tensor:
        h = self.embedding(x)
        for conv in self.convs:
            h = conv(h, edge_index, edge_attr)
        return global_mean_pool(h, batch, size=num_graphs)


def encode(encoder: CGCNNEncoder, batch: Any) -> Tensor:
    """Run ``encoder`` on the graph fields of a PyG ``Batch``: ``(B, hidden)``."""
    return encoder(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)


@register("cgcnn")
class CGCNN(PropertyModel):
    """CGCNN regressor: :class:`CGCNNEncoder` → softplus MLP → ``n_targets``.

    Defaults are the paper's / reference code's: ``hidden=64`` (``atom_fea_len``), ``n_conv=3``,
    ``head_hidden=128`` (``h_fea_len``), ``n_head_layers=1`` (``n_h``). One deliberate difference from the
    reference code: it applies an extra softplus to the pooled vector before the first head layer; the
    pooled features are already softplus outputs, so we leave it out and ``embed`` is the plain mean.

    Input: a PyG ``Batch`` of crystal graphs. Output: ``(B, n_targets)`` in normalised target units.
    """

    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, hidden: PositiveInt = 64,
                 n_conv: PositiveInt = 3, head_hidden: PositiveInt = 128, n_head_layers: NonNegativeInt = 1,
                 atom_dim: PositiveInt = N_ATOM_FEATURES,
                 edge_dim: PositiveInt = EDGE_DIM) -> None:
        super().__init__(n_targets=n_targets, composition_dim=composition_dim, hidden=hidden, n_conv=n_conv,
                         head_hidden=head_hidden, n_head_layers=n_head_layers, atom_dim=atom_dim,
                         edge_dim=edge_dim)
        self.encoder = CGCNNEncoder(hidden, n_conv, atom_dim, edge_dim)
        self.head = self.build_head(hidden, head_hidden, n_targets, n_head_layers)

    @staticmethod
    def build_head(hidden: int, head_hidden: int, n_targets: int, n_head_layers: int) -> nn.Module:
        """The readout ``(B, hidden) -> (B, n_targets)``: one softplus MLP."""
        return softplus_mlp(hidden, head_hidden, n_targets, n_head_layers)

    def embed(self, batch: Any) -> Tensor:
        """The pooled graph embedding ``(B, hidden)``."""
        return encode(self.encoder, batch)

    def forward(self, batch: Any) -> Tensor:
        return self.head(self.embed(batch))
