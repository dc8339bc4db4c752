"""Following a training job: one progress bar per fold and one for the refit, each with its
epoch, loss and validation metric, and at the end the per-fold metrics with mean ± std.

What a running job reports (workers/progress.py, served without its curves by GET
/jobs/{id}): `phase` ("cv" or "refit"), `fold` (1…n_folds; null in the refit), `n_folds`,
`epoch` (1-based), `epochs` and `logs`, the latest epoch's loss and metrics (val_* where
the fit has validation rows). That is the fit that reported last; when folds train in
parallel processes the others' latest values come from GET /jobs/{id}/history. A fold
that has ended is in the job's `folds` with its metrics and curves.

The bars are drawn on stderr, and only on a terminal: stdout keeps what a script reads (the
summary, or the final job's JSON with --json). Elsewhere (a log file, CI) a line is
written as each fold ends and about every 30 s.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import monotonic, sleep
from typing import Any

import httpx
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from core.vocabulary import JobState
from services.cli.errors import CliError, ExitCode
from services.cli.http import check
from services.cli.output import console, err, number
from training.spec import ModelSpec

POLL_S = 1.0
LOG_EVERY_S = 30.0


@dataclass
class Fit:
    """One fold's fit or the refit, as far as the job has told."""

    key: str  # the fold's number, or "refit"
    label: str
    epochs: int
    epoch: int = 0
    done: bool = False
    logs: dict[str, float] = field(default_factory=dict)


def _last(curves: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {name: values[-1] for name, values in curves.items() if values}


def _epochs_run(curves: Mapping[str, Sequence[float]]) -> int:
    return len(curves.get("loss") or next(iter(curves.values()), []))


def n_folds(spec: Mapping[str, Any]) -> int:
    """The folds a job's spec trains: k_folds (the schema's default unless set), 0 without
    cross-validation."""
    if spec.get("cross_validation") is False:
        return 0
    return int(spec.get("k_folds", ModelSpec.model_fields["k_folds"].default))


def evaluated_on(spec: Mapping[str, Any]) -> str:
    """What a version's metrics were scored on, in words."""
    k = n_folds(spec)
    return f"{k}-fold" if k else "no cross-validation: scores on the training rows"


def fits(job: Mapping[str, Any], history: Mapping[str, Any] | None = None) -> list[Fit]:
    """Every fit of the job, folds in order and the refit last, from the job (its folds
    and its progress) and, where given, its history."""
    spec = job.get("spec") or {}
    progress = job.get("progress") or {}
    k = int(progress.get("n_folds", n_folds(spec)))
    epochs = int(progress.get("epochs") or spec.get("epochs") or 0)
    by_key = {str(i): Fit(str(i), f"fold {i}/{k}", epochs) for i in range(1, k + 1)}
    by_key["refit"] = Fit("refit", "refit", epochs)
    for f in job.get("folds") or []:
        fit = by_key.setdefault(str(f["fold"]), Fit(str(f["fold"]), f"fold {f['fold']}", epochs))
        fit.epoch, fit.done, fit.logs = _epochs_run(f["history"]), True, _last(f["history"])
    running = [*(history or {}).get("folds", []), (history or {}).get("refit")]
    for h in running:
        if not h or (h.get("done") and h.get("fold") is not None):
            continue  # a finished fold: its row in the job's folds says the same
        seen = by_key.get("refit" if h.get("fold") is None else str(h["fold"]))
        if seen is not None and not seen.done:
            seen.epoch, seen.logs = _epochs_run(h["history"]), _last(h["history"])
    if progress.get("phase"):
        current = by_key.get("refit" if progress.get("fold") is None else str(progress["fold"]))
        epoch = int(progress.get("epoch") or 0)
        if current is not None and not current.done and epoch >= current.epoch:
            current.epoch, current.logs = epoch, dict(progress.get("logs") or current.logs)
    refit = by_key["refit"]
    if job.get("state") == JobState.SUCCEEDED:
        refit.done = True
        refit.epoch = refit.epoch or epochs
    return list(by_key.values())


def validation_metric(logs: Mapping[str, float], monitor: str | None = None) -> str | None:
    """The validation value to show: the early-stopping monitor when it is one, else the
    first val_* metric that is not the loss, else val_loss."""
    if monitor and monitor.startswith("val_") and monitor in logs:
        return monitor
    others = [k for k in logs if k.startswith("val_") and k != "val_loss"]
    if others:
        return others[0]
    return "val_loss" if "val_loss" in logs else None


def scores(logs: Mapping[str, float], monitor: str | None = None) -> str:
    """`loss 0.2310  val_loss 0.2500  val_accuracy 0.9412`: what is known of these."""
    names = ["loss"] if "loss" in logs else []
    val = validation_metric(logs, monitor)
    if "val_loss" in logs and val != "val_loss":
        names.append("val_loss")
    if val:
        names.append(val)
    return "  ".join(f"{n} {logs[n]:.4f}" for n in names)


def where(job: Mapping[str, Any]) -> str:
    """Where a running job is, in one line: `fold 2/5 epoch 3/50 loss 0.41 …` or `refit …`."""
    p = job.get("progress") or {}
    if not p.get("phase"):
        return ""
    fit = "refit" if p.get("fold") is None else f"fold {p['fold']}/{p.get('n_folds')}"
    line = f"{fit} epoch {p.get('epoch')}/{p.get('epochs')}"
    logs = scores(p.get("logs") or {}, _monitor(job))
    return f"{line}  {logs}" if logs else line


def _monitor(job: Mapping[str, Any]) -> str | None:
    stopping = (job.get("spec") or {}).get("early_stopping") or {}
    monitor = stopping.get("monitor")
    return monitor if isinstance(monitor, str) else None


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def fold_line(fold: Mapping[str, Any], n_folds: object) -> str:
    metrics = _scalars(fold["metrics"])
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    return f"fold {fold['fold']}/{n_folds} done in {_epochs_run(fold['history'])} epochs: {shown}"


def summary(job: Mapping[str, Any], version: Mapping[str, Any] | None = None) -> Table | None:
    """Each scalar metric per fold, and mean ± std over the folds: the registered version's
    when there is one (what the registry stores), else computed here the same way
    (population std, over the folds that have the metric)."""
    folds = sorted(job.get("folds") or [], key=lambda f: f["fold"])
    if not folds:
        return _training_rows(job, version)
    names: list[str] = []
    for f in folds:
        names += [n for n in _scalars(f["metrics"]) if n not in names]
    stored = (version or {}).get("metrics") or {}
    test = (version or {}).get("test_metrics") or {}
    table = Table(
        "metric",
        *(f"fold {f['fold']}" for f in folds),
        "mean ± std",
        title=f"job {job['id']}: {job['state']}, {len(folds)} of "
        f"{n_folds(job.get('spec') or {})} folds",
    )
    if test:
        table.add_column(f"test ({test.get('n_test')} rows)")
    for name in names:
        values = [_scalars(f["metrics"]).get(name) for f in folds]
        present = [v for v in values if v is not None]
        if name in stored:
            mean, std = stored[name].get("mean"), stored[name].get("std")
        else:
            mean, std = statistics.fmean(present), statistics.pstdev(present)
        cells = [name, *(number(v) for v in values), f"{number(mean)} ± {number(std)}"]
        if test:
            cells.append(number(test.get(name)))
        table.add_row(*cells)
    return table


def _training_rows(job: Mapping[str, Any], version: Mapping[str, Any] | None) -> Table | None:
    # A job without cross-validation has no folds: its version's metrics are the model's
    # scores on the rows it trained on.
    stored = (version or {}).get("metrics") or {}
    if not stored:
        return None
    table = Table(
        "metric",
        "training rows",
        title=f"job {job['id']}: {job['state']}, {evaluated_on(job.get('spec') or {})}",
    )
    for name, stats in stored.items():
        table.add_row(name, number(stats.get("mean")))
    return table


def outcome(job: Mapping[str, Any], version: Mapping[str, Any] | None = None) -> None:
    """The end of a job on stdout: the metrics table and the version it registered; a
    failed or cancelled job ends the command with exit code 1."""
    table = summary(job, version)
    if table is not None:
        console.print(table)
    refuse_unsuccessful(job)
    if job.get("model_version"):
        name, v = job["model_name"], job["model_version"]
        console.print(f"registered {name} version {v}  (kiln models show {name} {v})")


def refuse_unsuccessful(job: Mapping[str, Any]) -> None:
    """End the command with exit code 1 when the job failed (with its reason) or was
    cancelled: a script's `kiln jobs submit --wait && …` goes no further."""
    if job["state"] == JobState.FAILED:
        raise CliError(f"job {job['id']} failed: {job.get('reason')}", code=ExitCode.REFUSED)
    if job["state"] == JobState.CANCELLED:
        raise CliError(f"job {job['id']} was cancelled", code=ExitCode.REFUSED)


def registered(c: httpx.Client, job: Mapping[str, Any]) -> dict[str, Any] | None:
    if not job.get("model_version"):
        return None
    version: dict[str, Any] = check(
        c.get(f"/models/{job['model_name']}/versions/{job['model_version']}")
    )
    return version


class Bars:
    """The bars on a terminal (stderr), or lines now and then elsewhere."""

    def __init__(self, job_id: str) -> None:
        self.live = err.is_terminal
        self.progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            TextColumn("{task.fields[epochs]:>14}"),
            TextColumn("{task.fields[scores]}"),
            console=err,
            disable=not self.live,
            refresh_per_second=4,
        )
        self.tasks: dict[str, TaskID] = {}
        self.fits: dict[str, Fit] = {}
        self.job_id = job_id
        self.seen_folds: set[int] | None = None
        self.state: str | None = None
        self.phase: str | None = None
        self.logged_at = monotonic()

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def say(self, line: str) -> None:
        self.progress.console.print(line, soft_wrap=True, markup=False)

    def update(self, job: Mapping[str, Any], history: Mapping[str, Any] | None) -> None:
        if job["state"] != self.state:
            self.state = job["state"]
            if self.state == JobState.QUEUED:
                self.say(f"job {self.job_id} queued: waiting for a worker")
            elif self.state == JobState.RUNNING:
                self.say(
                    f"job {self.job_id} running on {job.get('worker')} (attempt {job['attempt']})"
                )
        folds = {f["fold"]: f for f in job.get("folds") or []}
        k_folds = n_folds(job.get("spec") or {})
        if self.seen_folds is not None:
            for k in sorted(folds.keys() - self.seen_folds):
                self.say(fold_line(folds[k], k_folds))
        self.seen_folds = set(folds)
        phase = (job.get("progress") or {}).get("phase")
        if phase == "refit" and self.phase != "refit":
            self.say("refit on all the rows: the model that is exported")
        self.phase = phase or self.phase
        monitor = _monitor(job)
        for fit in fits(job, history):
            self.fits[fit.key] = fit
            if fit.key not in self.tasks:
                self.tasks[fit.key] = self.progress.add_task(
                    fit.label, total=fit.epochs or None, epochs="", scores=""
                )
            self.progress.update(
                self.tasks[fit.key],
                # An early stop ends a fit before its last epoch: the bar is full anyway.
                completed=fit.epochs if fit.done else fit.epoch,
                epochs=_epochs_text(fit),
                scores=scores(fit.logs, monitor),
            )
        now = monotonic()
        if (
            not self.live
            and job["state"] == JobState.RUNNING
            and now - self.logged_at >= LOG_EVERY_S
        ):
            self.logged_at = now
            line = where(job)
            if line:
                self.say(line)


def _epochs_text(fit: Fit) -> str:
    if fit.done:
        return f"epoch {fit.epoch}/{fit.epochs} ✓"
    return f"epoch {fit.epoch}/{fit.epochs}" if fit.epoch else "waiting"


def _parallel(job: Mapping[str, Any], bars: Bars) -> bool:
    """Whether fits other than the one the progress names are under way (fold processes):
    then only the history has their latest epochs."""
    p = job.get("progress") or {}
    current = "refit" if p.get("fold") is None else str(p.get("fold"))
    done = {str(f["fold"]) for f in job.get("folds") or []}
    return any(
        key != current and key not in done and fit.epoch > 0 for key, fit in bars.fits.items()
    )


def follow(c: httpx.Client, job_id: str, *, interval: float = POLL_S) -> dict[str, Any]:
    """Poll the job about once a second until it ends; the last answer of GET /jobs/{id}."""
    try:
        with Bars(job_id) as bars:
            while True:
                job: dict[str, Any] = check(c.get(f"/jobs/{job_id}"))
                history = None
                if job["state"] == JobState.RUNNING:
                    logs = (job.get("progress") or {}).get("logs") or {}
                    if "loss" not in logs or _parallel(job, bars):
                        history = check(c.get(f"/jobs/{job_id}/history"))
                bars.update(job, history)
                if JobState(job["state"]).terminal:
                    return job
                sleep(interval)
    except KeyboardInterrupt:
        raise CliError(
            f"stopped following job {job_id}; it goes on: `kiln jobs show {job_id} --wait` "
            f"follows it again, `kiln jobs cancel {job_id}` stops it",
            code=ExitCode.INTERRUPTED,
        ) from None
