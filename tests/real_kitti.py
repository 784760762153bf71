"""Where the real KITTI frame lives: ../shared/fixtures beside the repository, or $KITTI_REAL_DIR."""
import os
from pathlib import Path

import pytest

REAL_ROOT = Path(
    os.environ.get("KITTI_REAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kitti_real")
)
REAL = REAL_ROOT / "training"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real KITTI frame not found at {REAL}")
