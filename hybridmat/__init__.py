"""hybridmat: high-throughput screening of crystalline materials with hybrid composition + graph models.

The Python face (torch and the rest load only when a function runs)::

    import hybridmat
    model = hybridmat.load_pretrained()
    predictions = model.predict(structures)          # DataFrame, the columns of `hybridmat predict`
    ranked = hybridmat.rank(predictions, by="lcb:e_form")
"""

from hybridmat.api import Model, load_model, load_pretrained, rank

__version__ = "0.1.0"
__all__ = ["Model", "__version__", "load_model", "load_pretrained", "rank"]
