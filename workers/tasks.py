"""The training task: claim the job row, train, store artifacts, register the version.

TensorFlow is imported inside the task body (through training.pipeline), so only the
child process that runs a job ever loads it; the worker's parent process forks children
and must never have touched TensorFlow (design.md: TF does not survive a fork).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry import datasets, jobs, versions
from registry.artifacts import ArtifactStore
from registry.errors import RegistryError
from training.errors import Cancelled, TrainingError
from training.spec import ModelSpec
from workers.celery_app import TASK_TRAIN

log = logging.getLogger("kiln.worker")


class Progress:
    """Where a job is, and the per-epoch history of every fit not yet stored as a fold row.

    Written by the thread that trains (or that reads the fold processes' reports), read
    by the heartbeat thread, which stores a snapshot with each beat: the database sees
    the curves at most once per heartbeat interval however short the epochs are.
    History keys are the fold number as a string, and "refit".
    """

    def __init__(self, *, n_folds: int, epochs: int) -> None:
        self._lock = threading.Lock()
        self._n_folds = n_folds
        self._epochs = epochs
        self._latest: dict[str, Any] | None = None
        self._running: dict[str, dict[str, list[float]]] = {}

    def on_epoch(self, phase: str, fold: int | None, epoch: int, logs: dict[str, float]) -> None:
        key = "refit" if fold is None else str(fold)
        with self._lock:
            series = self._running.setdefault(key, {})
            for name, value in logs.items():
                # 7 significant digits: what a float32 Keras log holds, in a third of the JSON.
                series.setdefault(name, []).append(float(f"{value:.7g}"))
            self._latest = {
                "phase": phase,
                "fold": fold,
                "n_folds": self._n_folds,
                "epoch": epoch,
                "epochs": self._epochs,
                "logs": {k: float(v) for k, v in logs.items()},
            }

    def fold_stored(self, fold: int) -> None:
        with self._lock:
            self._running.pop(str(fold), None)

    def refit_history(self) -> dict[str, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self._running.get("refit", {}).items()}

    def snapshot(self) -> dict[str, Any] | None:
        with self._lock:
            if self._latest is None:
                return None
            history = {
                key: {name: list(values) for name, values in series.items()}
                for key, series in self._running.items()
            }
            return {**self._latest, "history": history}


class _Heartbeat(threading.Thread):
    """Writes the job's heartbeat and latest progress every `interval` seconds.

    It also notices when the job stopped being `running` (cancelled over the API, or taken
    back by the sweeper) so training can stop at the next batch: the training loop only
    reads the `lost` flag, never the database.
    """

    def __init__(
        self, sm: sessionmaker[Session], job_id: str, interval: float, progress: Progress
    ) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self._sm = sm
        self._job_id = job_id
        self._interval = interval
        self._done = threading.Event()
        self.progress = progress
        self.lost = threading.Event()

    def beat(self) -> None:
        with self._sm() as session:
            alive = jobs.heartbeat(session, job_id=self._job_id, progress=self.progress.snapshot())
            session.commit()
        if not alive:
            self.lost.set()

    def run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                self.beat()
            except OperationalError:
                log.warning("heartbeat for job %s failed; will try again", self._job_id)

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=self._interval + 5)


def run_training_job(
    job_id: str,
    *,
    sm: sessionmaker[Session],
    store: ArtifactStore,
    heartbeat_interval_s: float,
    fold_processes: int = 1,
) -> str:
    """Run one job to a terminal state. Returns what happened, for the log."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with sm() as session:
        job = jobs.claim_job(session, job_id=job_id, worker=worker)
        session.commit()
        if job is None:
            # Another delivery of the same message claimed it, or it was cancelled or
            # finished: nothing to do, and acknowledging the message is right.
            return "skipped: not queued"
        dataset = datasets.get_dataset(session, dataset_id=job.dataset_id)
        spec = ModelSpec.model_validate(job.spec)
        model_name, dataset_id, sha256, target, retrained_from_id, kind = (
            job.model_name,
            dataset.id,
            dataset.sha256,
            dataset.target,
            job.retrained_from_id,
            dataset.kind,
        )

    progress = Progress(n_folds=spec.k_folds, epochs=spec.epochs)
    heart = _Heartbeat(sm, job_id, heartbeat_interval_s, progress)
    heart.start()

    def on_fold(result: Any) -> None:
        with sm() as session:
            jobs.record_fold(
                session,
                job_id=job_id,
                fold=result.fold,
                n_train=result.n_train,
                n_val=result.n_val,
                metrics=result.metrics,
                history=result.history,
            )
            session.commit()
        progress.fold_stored(result.fold)

    try:
        from training.data import load_dataset
        from training.pipeline import run_training

        window = None if spec.window is None else (spec.window.steps, spec.window.horizon)
        table = load_dataset(
            store.get(sha256), kind=kind, target=target, task=spec.task, window=window
        )
        result = run_training(
            table,
            spec=spec,
            on_epoch=progress.on_epoch,
            on_fold=on_fold,
            should_stop=heart.lost.is_set,
            fold_processes=fold_processes,
        )
        onnx_sha256 = store.put(result.onnx_bytes)
        keras_sha256 = store.put(result.keras_bytes)
        with sm() as session:
            version = versions.register_version(
                session,
                model_name=model_name,
                job_id=job_id,
                dataset_id=dataset_id,
                spec=spec.model_dump(mode="json"),
                metrics=result.summary,
                parity=result.parity,
                signature=result.signature,
                onnx_sha256=onnx_sha256,
                onnx_size_bytes=len(result.onnx_bytes),
                keras_sha256=keras_sha256,
                library_versions=result.library_versions,
                device=result.device,
                retrained_from_id=retrained_from_id,
                test_metrics=(
                    None
                    if result.test_metrics is None
                    else {**result.test_metrics, "n_test": result.n_test}
                ),
            )
            # The refit's curves have no fold row: they stay in the finished job's progress.
            done = {"history": {"refit": progress.refit_history()}}
            if not jobs.finish_job(session, job_id=job_id, state="succeeded", progress=done):
                # Cancelled or taken back while exporting: keep the registry as it was.
                session.rollback()
                return "dropped: job no longer running"
            session.commit()
        # A version that was deleted at the same moment may have taken files with the same
        # bytes (same spec, data and seed) out of the store: put back what this one needs
        # (put writes only what is absent or damaged).
        for data in (result.onnx_bytes, result.keras_bytes):
            store.put(data)
        return f"registered {model_name} version {version.version}"
    except Cancelled:
        return "cancelled"
    except (TrainingError, RegistryError) as exc:
        _fail(sm, job_id, f"{exc.code}: {exc}")
        return f"failed: {exc}"
    except OperationalError:
        # The registry is unreachable: leave the job running; the sweeper queues it again
        # once its heartbeat goes stale.
        raise
    except Exception as exc:
        log.exception("job %s failed", job_id)
        _fail(sm, job_id, f"internal_error: {type(exc).__name__}: {exc}")
        return f"failed: {exc}"
    finally:
        heart.stop()


def _fail(sm: sessionmaker[Session], job_id: str, reason: str) -> None:
    with sm() as session:
        jobs.finish_job(session, job_id=job_id, state="failed", reason=reason)
        session.commit()


def register_tasks(
    app: Celery,
    *,
    sm_factory: Any,
    store_factory: Any,
    heartbeat_interval_s: float,
    fold_processes: int = 1,
) -> None:
    """Bind the task to `app`. Factories run in the child process, after the fork."""

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_TRAIN,
        autoretry_for=(OperationalError,),
        retry_backoff=True,
        retry_jitter=True,
        max_retries=5,
    )
    def train(job_id: str) -> str:
        outcome = run_training_job(
            job_id,
            sm=sm_factory(),
            store=store_factory(),
            heartbeat_interval_s=heartbeat_interval_s,
            fold_processes=fold_processes,
        )
        log.info("job %s: %s", job_id, outcome)
        return outcome


__all__ = ["register_tasks", "run_training_job"]
