"""Models: the random-forest baseline, CGCNN, hybrids of composition and graph, ALIGNN, multi-task.

Importing this package registers every built-in model in :data:`~hybridmat.models.base.MODEL_REGISTRY`
(torch models, the random forest and late fusion alike; see :mod:`hybridmat.models.base` for the contract).
"""

from hybridmat.models import (  # noqa: F401  (register the models)
    alignn,
    alignn_simple,
    cgcnn,
    fusion,
    late_fusion,
    multitask,
    multitask_gat,
    rf,
)
