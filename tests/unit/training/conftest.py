from __future__ import annotations

import pytest
from sklearn.datasets import load_breast_cancer

from training.data import Table, load_table


@pytest.fixture(scope="module")
def cancer() -> Table:
    """scikit-learn's breast cancer table, loaded as a worker loads an upload."""
    frame = load_breast_cancer(as_frame=True).frame
    return load_table(frame.to_csv(index=False).encode(), target="target", task="binary")
