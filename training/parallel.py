"""Folds in parallel processes, one TensorFlow thread each.

The processes are *spawned*, never forked: a forked copy of a process that has loaded
TensorFlow hangs in its first fit (design.md), and a Celery worker child is itself a
fork. Each fold process reports its epochs through a queue; this process turns them into
the caller's callbacks, and sets an event that every fold process checks at each batch
when the caller's ``should_stop`` says so.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import AuthenticationString  # type: ignore[attr-defined]
from typing import Any

import numpy as np

from core import logs
from training.errors import FoldProcessDied
from training.fit import FitPlan, run_fold
from training.hooks import FoldResult, Hooks, OnEpoch
from training.spec import ModelSpec

# How often this process looks at the queue, the caller's should_stop and the futures.
_POLL_S = 0.1

# Set in each fold process by _start.
_reports: Any = None
_stop: Any = None
_data: tuple[np.ndarray, np.ndarray] | None = None


def run_folds_in_processes(
    plan: FitPlan,
    X: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    *,
    processes: int,
) -> list[FoldResult]:
    """Train the folds in ``processes`` spawned processes; results in fold order.

    Raises what a fold raised (``Cancelled``, ``NonFiniteLoss``, …) after stopping the
    other folds, and ``FoldProcessDied`` when a fold process ended without a result.
    """
    ctx = multiprocessing.get_context("spawn")
    reports = ctx.Queue()
    stop = ctx.Event()
    hooks = plan.hooks
    # The hooks are this process's closures: each fold process gets its own (_train_fold).
    spec_json, label_weights = plan.spec.model_dump_json(), plan.label_weights
    with _may_start_processes():
        pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=ctx,
            initializer=_start,
            # A spawned process starts with no logging and no job id: it gets this one's.
            initargs=(reports, stop, X, y, os.getpid(), logs.inherited()),
        )
        # The pool starts all its processes at the first submit.
        futures: dict[Future[FoldResult], int] = {
            pool.submit(_train_fold, spec_json, train_idx, val_idx, fold, label_weights): fold
            for fold, (train_idx, val_idx) in enumerate(splits, start=1)
        }
    results: dict[int, FoldResult] = {}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            _relay(reports, hooks.on_epoch)
            if hooks.stopped():
                stop.set()
            for future in sorted(done, key=futures.__getitem__):
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    raise FoldProcessDied(
                        f"the process training fold {futures[future]} ended without a result "
                        "(killed, or out of memory?); with many folds in parallel each "
                        "needs its own memory: lower WORKER_FOLD_PROCESSES or the batch size"
                    ) from exc
                _relay(reports, hooks.on_epoch)
                results[result.fold] = result
                if hooks.on_fold is not None:
                    hooks.on_fold(result)
    except BaseException:
        # Every other fold stops at its next batch; folds not yet started never start.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    _relay(reports, hooks.on_epoch)
    return [results[fold] for fold in sorted(results)]


@contextlib.contextmanager
def _may_start_processes() -> Iterator[None]:
    # Celery's prefork pool marks its children daemonic, in multiprocessing's own records
    # too, and multiprocessing refuses to start a process from a daemonic one (it could be
    # killed without waiting for them). The fold processes cannot outlive this one: they
    # are joined on every path out of run_folds_in_processes, and end by themselves when
    # their parent disappears (_exit_with_parent). Celery's billiard also stands in its
    # own process record, whose authkey refuses to be pickled for a spawned child: the
    # child gets the same key as a plain multiprocessing one.
    config: dict[str, object] = getattr(multiprocessing.current_process(), "_config")  # noqa: B009
    saved: dict[str, object] = {k: config[k] for k in ("daemon", "authkey") if k in config}
    config["daemon"] = False
    if "authkey" in config:
        config["authkey"] = AuthenticationString(bytes(config["authkey"]))  # type: ignore[call-overload]
    try:
        yield
    finally:
        config.pop("daemon", None)
        config.update(saved)


def _relay(reports: Any, on_epoch: OnEpoch | None) -> None:
    while True:
        try:
            phase, fold, epoch, logs = reports.get_nowait()
        except queue.Empty:
            return
        if on_epoch is not None:
            on_epoch(phase, fold, epoch, logs)


def _start(
    reports: Any,
    stop: Any,
    X: np.ndarray,
    y: np.ndarray,
    parent_pid: int,
    parent_logs: logs.Inherited | None,
) -> None:  # pragma: no cover - runs in the fold process
    global _reports, _stop, _data
    # First, before TensorFlow loads: its lines go where the parent's go, with the job id.
    logs.adopt(parent_logs)
    _reports, _stop, _data = reports, stop, (X, y)
    # An epoch report still in the pipe must not keep this process alive at exit: the
    # fold's full history comes back with its result anyway.
    reports.cancel_join_thread()
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    from training.runtime import configure_tensorflow

    configure_tensorflow(threads=1)


def _exit_with_parent(parent_pid: int) -> None:  # pragma: no cover - runs in the fold process
    # A parent killed with SIGKILL cannot stop its fold processes: they notice it is gone
    # (they are handed to another parent) and end, rather than train for nobody.
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        threading.Event().wait(1.0)


def _train_fold(
    spec_json: str,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    fold: int,
    label_weights: dict[int, float] | None,
) -> FoldResult:  # pragma: no cover - runs in the fold process
    assert _data is not None
    X, y = _data
    spec = ModelSpec.model_validate_json(spec_json)

    def report(phase: str, fold_: int | None, epoch: int, logs: dict[str, float]) -> None:
        _reports.put((phase, fold_, epoch, logs))

    plan = FitPlan(spec, Hooks(on_epoch=report, should_stop=_stop.is_set), label_weights)
    return run_fold(plan, X, y, train_idx, val_idx, fold)
