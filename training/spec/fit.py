"""How each fit runs: the window that cuts a series into sequences, and Keras's callbacks."""

from __future__ import annotations

from pydantic import Field

from training.spec.vocabulary import Monitor, Strict


class Window(Strict):
    """Cut a time-series table into windows: X is ``steps`` consecutive rows of every
    column (the target's past values included), y the target ``horizon`` rows after the
    window's last row."""

    steps: int = Field(ge=1, le=10_000)
    horizon: int = Field(default=1, ge=1, le=10_000)

    @property
    def gap(self) -> int:
        """Windows left out between the last one a fit trains on and the first one it is
        scored on, so that they share no row, inputs or label: window i reads rows
        i … i+steps-1 and its label is row i+steps-1+horizon."""
        return self.steps + self.horizon - 1


class EarlyStopping(Strict):
    """Keras's EarlyStopping: stop a fit when ``monitor`` stops improving."""

    monitor: Monitor = "val_loss"
    patience: int = Field(default=10, ge=1, le=10000)
    min_delta: float = Field(default=0.0, ge=0.0)
    restore_best_weights: bool = True


class ReduceLROnPlateau(Strict):
    """Keras's ReduceLROnPlateau: multiply the learning rate by ``factor`` on a plateau."""

    monitor: Monitor = "val_loss"
    factor: float = Field(default=0.1, gt=0.0, lt=1.0)
    patience: int = Field(default=10, ge=1, le=10000)
    min_lr: float = Field(default=0.0, ge=0.0)
