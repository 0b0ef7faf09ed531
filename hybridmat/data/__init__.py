"""Structure records and the sources that yield them."""

from hybridmat.data.records import RecordError, StructureRecord

__all__ = ["RecordError", "StructureRecord"]
