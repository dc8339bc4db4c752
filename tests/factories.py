"""What tests share: specs by kind (one builder each), and registry rows made through the
registry's own functions."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.access import Scope
from registry import datasets, jobs, keys, versions
from registry.db import make_engine
from registry.models import Dataset, JobEvent, ModelVersion, TrainingJob
from training.spec import ModelSpec

_OUTPUT = {
    "binary": ({"type": "Dense", "units": 1, "activation": "sigmoid"}, "binary_crossentropy"),
    "multiclass": (None, "sparse_categorical_crossentropy"),
    "regression": ({"type": "Dense", "units": 1, "activation": "linear"}, "mse"),
}


def mlp(*hidden: float, task: str = "binary", classes: int = 3, **fields: Any) -> dict[str, Any]:
    """A spec of Dense(relu) layers (an int: its units) and Dropout (a float: its rate),
    then the output layer and loss the task needs; ``fields`` override the rest."""
    layers: list[dict[str, Any]] = [
        {"type": "Dropout", "rate": h}
        if isinstance(h, float)
        else {"type": "Dense", "units": h, "activation": "relu"}
        for h in hidden
    ]
    output, loss = _OUTPUT[task]
    layers.append(output or {"type": "Dense", "units": classes, "activation": "softmax"})
    spec: dict[str, Any] = {
        "task": task,
        "layers": layers,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "loss": loss,
    }
    return spec | fields


def cnn(classes: int = 10, *, filters: int = 8, **fields: Any) -> dict[str, Any]:
    """The digits CNN: Conv2D 3x3 relu, MaxPooling2D 2, Flatten, Dense softmax."""
    spec: dict[str, Any] = {
        "task": "multiclass",
        "loss": "sparse_categorical_crossentropy",
        "layers": [
            {"type": "Conv2D", "filters": filters, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Flatten"},
            {"type": "Dense", "units": classes, "activation": "softmax"},
        ],
        "optimizer": {"name": "adam", "learning_rate": 0.01},
    }
    return spec | fields


def lstm(units: int = 4, *, steps: int = 10, horizon: int = 1, **fields: Any) -> dict[str, Any]:
    """A regression LSTM over windows of a time-series table."""
    spec: dict[str, Any] = {
        "task": "regression",
        "loss": "mse",
        "layers": [{"type": "LSTM", "units": units}, {"type": "Dense", "units": 1}],
        "window": {"steps": steps, "horizon": horizon},
    }
    return spec | fields


def model_spec(spec: dict[str, Any], **changes: Any) -> ModelSpec:
    return ModelSpec.model_validate(spec | changes)


# The registry's and the API's tests: a small binary MLP that trains in a second.
SPEC = mlp(4, epochs=2, batch_size=16, k_folds=3, seed=0)
# The training tests' binary classifier of the breast cancer table.
BINARY_MLP = mlp(16, 0.1, epochs=10, k_folds=3, seed=7)


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
    return datasets.add_dataset(session, Dataset(**fields))


def make_job(session: Session, **overrides: Any) -> TrainingJob:
    fields: dict[str, Any] = {"model_name": "toy", "spec": SPEC}
    fields.update(overrides)
    if "dataset_id" not in fields:
        fields["dataset_id"] = make_dataset(session).id
    return jobs.add_job(session, TrainingJob(**fields))


def make_version(session: Session, **overrides: Any) -> ModelVersion:
    job = overrides.pop("job", None) or make_job(
        session, model_name=overrides.get("model_name", "toy")
    )
    model_name = overrides.pop("model_name", job.model_name)
    fields: dict[str, Any] = {
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
    return versions.register_version(session, model_name=model_name, row=ModelVersion(**fields))


def row_counts(db_url: str, *tables: type[Any]) -> tuple[int, ...]:
    """Rows in each table, read on a connection of its own: what a refused request must
    leave unchanged. Datasets, jobs and job events when no table is named."""
    engine = make_engine(db_url)
    with engine.connect() as conn:
        counts = tuple(
            conn.scalar(select(func.count()).select_from(t)) or 0
            for t in (tables or (Dataset, TrainingJob, JobEvent))
        )
    engine.dispose()
    return counts


def bearer(app: Any, owner: str, *scopes: str, models: list[str] | None = None) -> dict[str, str]:
    """Headers with a new API key of ``owner`` for an in-process API or predictor ``app``
    (its key ring reloaded at once, instead of within AUTH_KEY_REFRESH_S)."""
    with app.state.sessionmaker() as session:
        _, token = keys.create_key(
            session, owner=owner, scopes=[Scope(s) for s in scopes], models=models
        )
        session.commit()
    app.state.keys.refresh()
    return {"Authorization": f"Bearer {token}"}
