"""A job's stored dataset, loaded as its spec reads it: what every job kind trains on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.artifacts import ArtifactStore
from registry.models import Dataset
from training.spec import ModelSpec

if TYPE_CHECKING:
    from training.data import Table


def load_table(dataset: Dataset, spec: ModelSpec, store: ArtifactStore) -> Table:
    """The job's stored dataset as its spec reads it (cut into windows for a sequence)."""
    from training.data import load_dataset

    window = None if spec.window is None else (spec.window.steps, spec.window.horizon)
    return load_dataset(
        store.get(dataset.sha256),
        kind=dataset.kind,
        target=dataset.target,
        task=spec.task,
        window=window,
    )
