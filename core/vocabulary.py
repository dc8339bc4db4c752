"""The enums of job state, task and data kind, defined once for every package.

Members are strings (StrEnum): they compare equal to their values, store as their values
and serialise to JSON as them, so rows, specs and API bodies hold plain strings.
"""

from __future__ import annotations

import re
from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"

    @property
    def classifies(self) -> bool:
        return self is not Task.REGRESSION


class DataKind(StrEnum):
    """What a model reads. A dataset is stored as a table (CSV) or images (NPZ); a job's
    spec cuts a table into sequences with its `window`."""

    TABLE = "table"
    IMAGE = "image"
    SEQUENCE = "sequence"


# A binary model outputs P(the second label); at or above this it is that label, in the
# metrics a version stores and in the labels the predictor serves.
BINARY_THRESHOLD = 0.5


# A failed job's reason starts with a code ("data_mismatch: ...", "internal_error: ...");
# metrics count failures by it. A job whose worker stopped sending heartbeats on its last
# attempt fails with this one.
WORKER_LOST = "worker_lost"
_CODE = re.compile(r"([a-z][a-z0-9_]*): ")


def failure_code(reason: str | None) -> str:
    """The code a failure reason starts with; "other" for a reason without one."""
    found = _CODE.match(reason or "")
    return found.group(1) if found else "other"
