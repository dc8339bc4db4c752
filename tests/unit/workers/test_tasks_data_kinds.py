"""The training task reads a dataset the way the job's spec asks: a time-series table cut
into windows, or images from an NPZ, and registers a version with the matching signature.
Real registry (SQLite), real artifact folder, real training; no broker needed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import sessionmaker

from registry import datasets, jobs, versions
from registry.artifacts import LocalArtifactStore
from registry.db import make_engine
from workers.tasks import run_training_job


def _run(
    sqlite_url: str,
    tmp_path: Path,
    *,
    data: bytes,
    kind: str,
    target: str,
    shape: list[int],
    spec: dict[str, Any],
    class_counts: dict[str, int] | None,
) -> Any:
    engine = make_engine(sqlite_url)
    sm = sessionmaker(engine, expire_on_commit=False)
    store = LocalArtifactStore(tmp_path / "artifacts")
    sha = store.put(data)
    with sm() as session:
        ds = datasets.create_dataset(
            session,
            name=f"{kind}.bin",
            source="upload",
            sha256=sha,
            size_bytes=len(data),
            target=target,
            n_rows=shape[0],
            columns=[],
            class_counts=class_counts,
            kind=kind,
            shape=shape,
        )
        job = jobs.create_job(
            session, model_name=f"worker-{kind}-{sha[:6]}", dataset_id=ds.id, spec=spec
        )
        session.commit()
        job_id, model_name = job.id, job.model_name
    outcome = run_training_job(job_id, sm=sm, store=store, heartbeat_interval_s=1.0)
    with sm() as session:
        finished = jobs.get_job(session, job_id=job_id)
        assert finished.state == "succeeded", (outcome, finished.reason)
        mv = versions.get_version(session, model_name=model_name)
        signature, parity = mv.signature, mv.parity
    engine.dispose()
    return signature, parity


def test_a_window_in_the_spec_trains_on_sequences(sqlite_url: str, tmp_path: Path) -> None:
    t = np.arange(60.0)
    frame = pd.DataFrame({"a": np.sin(t / 4), "y": np.cos(t / 4)})
    spec = {
        "task": "regression",
        "loss": "mse",
        "epochs": 1,
        "k_folds": 2,
        "window": {"steps": 4, "horizon": 3},
        "layers": [{"type": "GRU", "units": 3}, {"type": "Dense", "units": 1}],
    }
    sig, parity = _run(
        sqlite_url,
        tmp_path,
        data=frame.to_csv(index=False).encode(),
        kind="table",
        target="y",
        shape=[60, 1],
        spec=spec,
        class_counts=None,
    )
    assert sig["kind"] == "sequence"
    assert sig["inputs"][0]["shape"] == [-1, 4, 2]
    assert sig["window"] == {"steps": 4, "horizon": 3, "target": "y"}
    assert sig["feature_names"] == ["a", "y"]
    assert parity["passed"]
    assert parity["rows"] == 60 - 4 - 3 + 1


def test_an_image_dataset_trains_a_cnn(sqlite_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, size=(24, 6, 6)).astype(np.uint8)
    y = np.array(["cat", "dog"] * 12)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    spec = {
        "task": "binary",
        "loss": "binary_crossentropy",
        "epochs": 1,
        "k_folds": 2,
        "layers": [
            {"type": "Conv2D", "filters": 2, "kernel_size": 3},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
    }
    sig, parity = _run(
        sqlite_url,
        tmp_path,
        data=buffer.getvalue(),
        kind="image",
        target="y",
        shape=[24, 6, 6, 1],
        spec=spec,
        class_counts={"cat": 12, "dog": 12},
    )
    assert sig["kind"] == "image"
    assert sig["inputs"][0]["shape"] == [-1, 6, 6, 1]
    assert sig["class_labels"] == ["cat", "dog"]
    assert sig["feature_names"] is None
    assert parity["passed"]
