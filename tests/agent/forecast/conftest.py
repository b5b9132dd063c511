from __future__ import annotations

import numpy as np
import pytest
from forecast_synth import WEEK, double_seasonal


@pytest.fixture
def series() -> np.ndarray:
    return double_seasonal(4 * WEEK)
