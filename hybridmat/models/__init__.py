"""Models: the random-forest baseline, CGCNN, hybrids of composition and graph, ALIGNN, multi-task.

Importing this package registers the torch models with :func:`~hybridmat.models.base.build_model`.
The random forest is not a torch model: it is dispatched by :data:`~hybridmat.models.rf.RF_NAME`.
"""

from hybridmat.models import (  # noqa: F401  (register the torch models)
    alignn, alignn_simple, cgcnn, fusion, multitask, multitask_gat,
)
