"""The report job kind: the evaluation report (and the held-out predictions and reference
profile) of a version registered before them.

A newer version's report is written by its training job, with a section per fold; an
older one's fold models were never kept, so its report scores the exported ONNX model on
the rows its spec held out for testing, or on its training rows, marked as such
(training.pipeline.report_of_export), and keeps its outputs on the test rows for gates
and the reference profile of its training rows, whichever of the three it lacks. ONNX
Runtime only: this job never loads TensorFlow.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from registry import orphans, predictions, versions
from registry.artifacts import ArtifactStore
from registry.models import ModelVersion
from training.spec import ModelSpec
from workers.data import load_table
from workers.jobrun import JobRun


def json_bytes(document: dict[str, Any]) -> bytes:
    """A report or profile as stored. allow_nan=False: neither holds NaN or infinity
    (training.report writes None for them)."""
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()


def write_report(run: JobRun, *, store: ArtifactStore) -> str:
    from training.pipeline import report_of_export, training_profile

    job = run.job
    number = int((job.params or {})["version"])
    onnx_sha256 = run.read(
        lambda s: versions.get_version(s, model_name=job.model_name, version=number).onnx_sha256
    )
    spec = ModelSpec.model_validate(job.spec)
    table = load_table(job.dataset, spec, store)
    report, held_out = report_of_export(table, spec=spec, onnx_bytes=store.get(onnx_sha256))
    profile = training_profile(table, spec)

    def attach(session: Session) -> ModelVersion:
        mv = versions.get_version(session, model_name=job.model_name, version=number)
        # A report already there (another report job got there first) is kept.
        if mv.report_sha256 is None:
            mv.report_sha256 = orphans.put_referenced(session, store, json_bytes(report))
        if mv.predictions_sha256 is None and held_out is not None:
            data = predictions.encode(held_out.rows, held_out.y, held_out.output)
            mv.predictions_sha256 = orphans.put_referenced(session, store, data)
        if mv.profile_sha256 is None:
            mv.profile_sha256 = orphans.put_referenced(session, store, json_bytes(profile))
        return mv

    if run.succeed(attach, progress={}) is None:
        return "dropped: job no longer this attempt's"
    return f"wrote the report of {job.model_name} version {number}"
