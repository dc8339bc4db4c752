"""Rows for tests, made through the registry's own functions."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from registry import datasets, jobs, versions
from registry.models import Dataset, ModelVersion, TrainingJob

SPEC: dict[str, Any] = {
    "task": "binary",
    "layers": [
        {"type": "Dense", "units": 4, "activation": "relu"},
        {"type": "Dense", "units": 1, "activation": "sigmoid"},
    ],
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "loss": "binary_crossentropy",
    "epochs": 2,
    "batch_size": 16,
    "k_folds": 3,
    "seed": 0,
}


def make_dataset(session: Session, **overrides: Any) -> Dataset:
    fields: dict[str, Any] = {
        "name": "toy.csv",
        "source": "upload",
        "sha256": uuid.uuid4().hex + uuid.uuid4().hex,
        "size_bytes": 100,
        "target": "y",
        "n_rows": 10,
        "columns": [{"name": "a", "dtype": "float64"}, {"name": "y", "dtype": "int64"}],
        "class_counts": {"0": 5, "1": 5},
    }
    fields.update(overrides)
    return datasets.create_dataset(session, **fields)


def make_job(session: Session, **overrides: Any) -> TrainingJob:
    fields: dict[str, Any] = {"model_name": "toy", "spec": SPEC}
    fields.update(overrides)
    if "dataset_id" not in fields:
        fields["dataset_id"] = make_dataset(session).id
    return jobs.create_job(session, **fields)


def make_version(session: Session, **overrides: Any) -> ModelVersion:
    job = overrides.pop("job", None) or make_job(
        session, model_name=overrides.get("model_name", "toy")
    )
    fields: dict[str, Any] = {
        "model_name": job.model_name,
        "job_id": job.id,
        "dataset_id": job.dataset_id,
        "spec": SPEC,
        "metrics": {"f1": {"mean": 0.9, "std": 0.01}},
        "parity": {"max_abs_diff": 1e-7, "tolerance": 1e-4, "passed": True},
        "signature": {"inputs": [], "outputs": []},
        "onnx_sha256": "a" * 64,
        "onnx_size_bytes": 10,
        "keras_sha256": "b" * 64,
        "library_versions": {"tensorflow": "2.21.0"},
        "device": "CPU",
    }
    fields.update(overrides)
    return versions.register_version(session, **fields)
