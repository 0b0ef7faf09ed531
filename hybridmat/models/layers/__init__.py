"""Graph layers: one layer per module, ``forward`` on plain tensors (PyG style)."""

from hybridmat.models.layers.cgconv import CGConv
from hybridmat.models.layers.eggc import EdgeGatedGraphConv

__all__ = ["CGConv", "EdgeGatedGraphConv"]
