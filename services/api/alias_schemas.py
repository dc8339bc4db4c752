"""Request and response bodies of the alias routes: moves, rollbacks, their history, and
the promotion gate a move can carry (services/api/gates.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.schemas import MAX_VERSION, FromRow, Text


class PromotionGate(BaseModel):
    """Move the alias only when the candidate beats the version it points at now."""

    model_config = ConfigDict(extra="forbid")

    metric: Text = Field(
        max_length=100,
        description="A fold metric both versions have (f1, accuracy, rmse, ...); lower is "
        "better for loss, log_loss, mse, rmse, mae and error_rate, higher for the rest.",
    )
    min_delta: float = Field(
        default=0.0,
        ge=-1e6,
        le=1e6,
        description="How much better the candidate's mean must be, in the metric's units; "
        "negative for a non-inferiority margin (not worse by more than this).",
    )
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="The one-sided paired test's significance level.",
    )


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION, description="The version the alias will point at.")
    reason: Text | None = Field(default=None, max_length=2000)
    gate: PromotionGate | None = Field(
        default=None,
        description="Compare with the version the alias points at, fold by fold, and refuse "
        "(409) unless the candidate is better by min_delta at significance alpha. Both "
        "versions must have been cross-validated on the same folds (dataset, k_folds, seed, "
        "test_split, window).",
    )


class AliasRollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: Annotated[int, Field(ge=1, le=MAX_VERSION)] | Literal["previous"] = Field(
        default="previous",
        description="A version number, or `previous`: where the alias pointed before its "
        "last change.",
    )
    reason: Text | None = Field(default=None, max_length=2000)


class AliasRead(BaseModel):
    alias: str
    version: int
    updated_at: datetime


class AliasEventRead(FromRow):
    alias: str
    from_version: int | None
    to_version: int | None = Field(description="None when the alias was deleted.")
    actor: str | None
    reason: str | None
    gate: dict[str, Any] | None = Field(
        default=None, description="The promotion gate this move passed, with its figures."
    )
    at: datetime
