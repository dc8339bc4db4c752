"""What a training run tells its caller, and how the caller stops it.

One `Hooks` value travels from the worker through k-fold, the fold processes and every
fit, instead of three callbacks through every signature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from training.metrics import MetricValue

# (phase "cv" or "refit", fold number or None for the refit, epoch from 1, Keras's logs)
OnEpoch = Callable[[str, int | None, int, dict[str, float]], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class FoldResult:
    fold: int
    n_train: int
    n_val: int
    metrics: dict[str, MetricValue]
    history: dict[str, list[float]]
    # The fold's fit and scoring, wall-clock.
    seconds: float = 0.0
    # The validation rows' targets and the fold model's outputs on them (the report's).
    y_true: np.ndarray | None = field(default=None, repr=False, compare=False)
    output: np.ndarray | None = field(default=None, repr=False, compare=False)


OnFold = Callable[[FoldResult], None]


@dataclass(frozen=True)
class Hooks:
    """``on_epoch`` hears every epoch of every fit, ``on_fold`` every fold's scores as it
    ends, and ``should_stop`` is asked at batch ends: True stops the run with Cancelled."""

    on_epoch: OnEpoch | None = None
    on_fold: OnFold | None = None
    should_stop: ShouldStop | None = None

    def stopped(self) -> bool:
        return self.should_stop is not None and self.should_stop()
