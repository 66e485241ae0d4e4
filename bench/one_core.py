"""Import first in a one-core benchmark script: pins tokenizers' and numba's thread pools to one
thread (before either starts) and puts the checkout on ``sys.path``. ``REPO`` and ``DATA`` (the
shared data folder, ``SHARED_DATA_DIR`` or ``../shared/data``) are exported."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its thread pool
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
