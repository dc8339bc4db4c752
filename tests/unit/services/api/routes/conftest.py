from __future__ import annotations

import uuid
from statistics import fmean, pstdev
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from registry import jobs
from registry.artifacts import ArtifactStore
from registry.db import make_engine
from tests.factories import make_dataset, make_job, make_version

FOLDS = {
    # version index → per-fold f1 and accuracy
    0: [(0.80, 0.85), (0.90, 0.88), (0.70, 0.82)],
    1: [(0.95, 0.93), (0.93, 0.91), (0.94, 0.92)],
    2: [(0.855, 0.90), (0.86, 0.90), (0.865, 0.90)],
}


@pytest.fixture
def model(client: TestClient, db_url: str) -> dict[str, Any]:
    """A model with three committed versions, each with three folds of metrics and its own
    ONNX and Keras files in the app's artifact store."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    store: ArtifactStore = client.app.state.store  # type: ignore[attr-defined]
    engine = make_engine(db_url)
    info: dict[str, Any] = {"name": name, "versions": [], "hashes": [], "folds": FOLDS}
    with Session(engine, expire_on_commit=False) as s:
        ds = make_dataset(s)
        other = make_dataset(s)
        info["dataset"], info["other_dataset"] = ds, other
        for i, folds in FOLDS.items():
            job = make_job(s, model_name=name, dataset_id=(other if i == 2 else ds).id)
            for k, (f1, acc) in enumerate(folds):
                jobs.record_fold(
                    s,
                    job_id=job.id,
                    fold=k,
                    n_train=6,
                    n_val=3,
                    metrics={"f1": f1, "accuracy": acc, "confusion_matrix": [[1, 0], [0, 2]]},
                    history={},
                )
            onnx = store.put(f"onnx {name} {i}".encode())
            keras = store.put(f"keras {name} {i}".encode())
            info["hashes"].append((onnx, keras))
            f1s, accs = [f for f, _ in folds], [a for _, a in folds]
            metrics = {"f1": {"mean": fmean(f1s), "std": pstdev(f1s)}}
            if i != 1:  # version 2 lacks accuracy: ordering by it puts v2 last
                metrics["accuracy"] = {"mean": fmean(accs), "std": pstdev(accs)}
            mv = make_version(
                s,
                job=job,
                metrics=metrics,
                onnx_sha256=onnx,
                keras_sha256=keras,
                library_versions={"kiln": "0.1.0", "tensorflow": "2.21.0"},
            )
            info["versions"].append(mv.version)
        s.commit()
    engine.dispose()
    return info
