"""Where a version came from (its lineage), and versions compared metric by metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from registry.versions import get_version


def lineage(session: Session, *, model_name: str, version: int) -> dict[str, Any]:
    mv = get_version(session, model_name=model_name, version=version)
    job = mv.job
    ds = mv.dataset
    shape = ds.shape
    if shape is None:
        # Rows made before the shape column was filled: a table's features are every
        # column but the target.
        shape = [ds.n_rows, ds.n_columns - 1]
    src = mv.retrained_from
    parent = None if src is None else {"model_name": src.model_name, "version": src.version}
    return {
        "model_name": mv.model_name,
        "version": mv.version,
        "job": {
            "id": job.id,
            "state": job.state,
            "attempt": job.attempt,
            "worker": job.worker,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        },
        "spec": mv.spec,
        "seed": mv.spec.get("seed"),
        "dataset": {
            "id": ds.id,
            "name": ds.name,
            "source": ds.source,
            "kind": ds.kind,
            "sha256": ds.sha256,
            "shape": shape,
            "target": ds.target,
        },
        "library_versions": mv.library_versions,
        "device": mv.device,
        "retrained_from": parent,
    }


@dataclass(frozen=True)
class VersionMetrics:
    version: int
    summary: dict[str, dict[str, float]]
    folds: list[dict[str, Any]]


def compare(session: Session, *, model_name: str, numbers: Sequence[int]) -> dict[str, Any]:
    """Every metric of the given versions side by side: mean, std and per-fold values of
    each, and each version's difference from the first one named (mean minus mean; the
    first is the baseline, as in `compare?versions=<baseline>,<candidate>,…`)."""
    rows: list[VersionMetrics] = []
    for n in numbers:
        mv = get_version(session, model_name=model_name, version=n)
        rows.append(VersionMetrics(n, mv.metrics, [f.metrics for f in mv.folds]))
    names: list[str] = []
    for r in rows:
        names.extend(m for m in r.summary if m not in names)
    base = rows[0]
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        base_mean = (base.summary.get(name) or {}).get("mean")
        per_version = []
        for r in rows:
            stats = r.summary.get(name)
            mean = None if stats is None else stats.get("mean")
            per_version.append(
                {
                    "version": r.version,
                    "mean": mean,
                    "std": None if stats is None else stats.get("std"),
                    "folds": [_scalar(f.get(name)) for f in r.folds],
                    "diff_from_baseline": (
                        None if mean is None or base_mean is None else mean - base_mean
                    ),
                }
            )
        out[name] = per_version
    return {
        "model_name": model_name,
        "baseline": base.version,
        "versions": list(numbers),
        "metrics": out,
    }


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
