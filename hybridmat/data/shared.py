"""Where the project's shared datasets live (the real DFT tables beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

#: $HYBRIDMAT_SHARED_DATA, else ../shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("HYBRIDMAT_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
#: The Materials Project table every benchmark and the demo's hull use.
MP_TABLE = SHARED_DATA / "mp_cgcnn36k" / "mp_cgcnn36k.parquet"
