"""Where a running job is, and the per-epoch curves of its fits not yet stored elsewhere."""

from __future__ import annotations

import threading
from typing import Any


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
