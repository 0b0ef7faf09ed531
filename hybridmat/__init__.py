"""hybridmat: high-throughput screening of crystalline materials with hybrid composition + graph models."""

__version__ = "0.1.0"
