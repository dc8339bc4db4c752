"""Bodies of the search routes: a search as submitted, and its leaderboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.vocabulary import JobState
from services.api.schemas import MODEL_NAME_PATTERN, FromRow, Text
from training.spec import ModelSpec
from training.spec.search import Budget, Objective, SearchOptions, SearchSpace


class SearchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(
        pattern=MODEL_NAME_PATTERN,
        description="Registered model the best trial's version goes to; created on first use.",
    )
    dataset: Text = Field(description="A dataset id, or `sklearn:<name>` for a built-in one.")
    spec: ModelSpec = Field(description="The base spec: what every dimension left out keeps.")
    space: SearchSpace
    objective: Objective = Field(default_factory=Objective)
    budget: Budget = Field(default_factory=Budget)
    options: SearchOptions = Field(default_factory=SearchOptions)


class MeanStd(BaseModel):
    mean: float
    std: float


class TrialFoldRead(FromRow):
    """A trial's fold without its curves (they are at GET /jobs/{job_id}/history)."""

    fold: int
    n_train: int
    n_val: int
    metrics: dict[str, Any]
    seconds: float | None


class TrialRead(BaseModel):
    trial: int = Field(description="Kiln's number of the trial in its search, from 1.")
    job_id: str
    state: str = Field(
        description="queued, running, complete, pruned (stopped between folds by the pruner), "
        "stopped (at the search's wall time), failed (see reason) or cancelled."
    )
    reason: str | None
    params: dict[str, Any] | None = Field(description="The sampled value of each dimension.")
    objective: float | None = Field(description="The objective's mean over the trial's folds.")
    metrics: dict[str, MeanStd] = Field(description="Mean and std over the folds it trained.")
    folds: list[TrialFoldRead]
    folds_sha256: str | None
    seconds: float | None = Field(description="Its folds' training time, summed.")
    worker: str | None = Field(description="host:pid of the worker process that ran it.")
    started_at: datetime | None
    finished_at: datetime | None


class RefitRead(BaseModel):
    job_id: str
    trial: int | None = Field(default=None, description="The trial it refits.")
    state: JobState
    model_version: int | None
    links: dict[str, str]


class SearchRead(BaseModel):
    id: str
    model_name: str
    dataset_id: str
    state: JobState
    reason: str | None
    spec: dict[str, Any]
    space: dict[str, Any]
    objective: dict[str, Any]
    budget: dict[str, Any]
    options: dict[str, Any]
    folds_sha256: str | None = Field(description="The fold assignment every trial shares.")
    best_trial: int | None
    counts: dict[str, int] = Field(description="Trials in each state.")
    fold_fits: int = Field(description="Folds trained across all trials.")
    leaderboard: list[TrialRead] = Field(
        description="Complete trials best first, then running, queued, pruned, stopped, failed."
    )
    refit: RefitRead | None = Field(description="The best trial's refit, once queued.")
    refits: list[RefitRead] = Field(
        default=[],
        description="Every refit queued (options.refit_top of the best trials), best first.",
    )
    created_at: datetime
    deadline_at: datetime
    finished_at: datetime | None
    links: dict[str, str] = {}


class SearchAccepted(BaseModel):
    id: str
    state: JobState
    links: dict[str, str]
