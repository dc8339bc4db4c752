"""`kiln jobs`: list, show, follow with --wait (bars per fold, the refit, the metrics at
the end), against the real API app in-process, on jobs made through the registry."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy.orm import Session

from core.vocabulary import JobState
from registry import jobs
from registry.db import make_engine
from services.cli import follow
from tests.conftest import api_settings
from tests.factories import SPEC, make_job
from tests.unit.services.cli.conftest import FOLD_F1, Kiln, through, trained_job


def test_list_shows_jobs_newest_first_and_filters_by_state(kiln: Kiln, db: Session) -> None:
    done = trained_job(db)
    queued = make_job(db, model_name=f"cli-queued-{uuid.uuid4().hex[:6]}")
    db.commit()
    out = kiln("jobs", "list", "--limit", "1000")
    assert out.exit_code == 0, out.output
    rows = {
        line.split()[1]: line for line in out.stdout.splitlines() if line.startswith(("│", "┃"))
    }
    assert done.id in rows
    assert queued.id in rows
    assert out.stdout.index(queued.id) < out.stdout.index(done.id)
    assert "succeeded" in rows[done.id]
    assert rows[done.id].split("│")[-2].strip() == "1"
    assert "queued" in rows[queued.id]
    running = kiln("jobs", "list", "--state", "queued", "--limit", "1000")
    assert queued.id in running.stdout
    assert done.id not in running.stdout
    bad = kiln("jobs", "list", "--state", "sleeping")
    assert bad.exit_code == 2


def test_list_json_is_the_api_answer(kiln: Kiln, db: Session, client: TestClient) -> None:
    trained_job(db)
    out = kiln("jobs", "list", "--json", "--limit", "5", "--offset", "1")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == client.get("/jobs", params={"limit": 5, "offset": 1}).json()


def test_show_a_finished_job_summarises_its_folds(kiln: Kiln, db: Session) -> None:
    job = trained_job(db)
    out = kiln("jobs", "show", job.id)
    assert out.exit_code == 0, out.output
    assert (
        f"job {job.id}: succeeded, model {job.model_name}, attempt 1, worker host:1" in out.stdout
    )
    table = _rows(out.stdout)
    assert table["f1"] == ["0.8000", "0.9000", "1.0000", "0.9000 ± 0.0816"]
    assert table["accuracy"] == ["0.7500", "0.8500", "0.9500", "0.8500 ± 0.0816"]
    assert "confusion_matrix" not in out.stdout
    assert f"registered {job.model_name} version 1" in out.stdout
    assert "None" not in out.stdout


def test_wait_on_a_finished_job_prints_the_summary(kiln: Kiln, db: Session) -> None:
    job = trained_job(db)
    out = kiln("jobs", "show", job.id, "--wait")
    assert out.exit_code == 0, out.output
    assert _rows(out.stdout)["f1"][-1] == "0.9000 ± 0.0816"
    assert f"registered {job.model_name} version 1" in out.stdout


def test_wait_json_prints_only_the_final_job(kiln: Kiln, db: Session, client: TestClient) -> None:
    job = trained_job(db)
    out = kiln("jobs", "show", job.id, "--wait", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == client.get(f"/jobs/{job.id}").json()


def test_a_failed_job_exits_1_with_its_reason(kiln: Kiln, db: Session) -> None:
    job = trained_job(db, state=JobState.FAILED, register=False)
    out = kiln("jobs", "show", job.id, "--wait")
    assert out.exit_code == 1
    assert out.stderr.strip() == f"error: job {job.id} failed: training_diverged: loss is NaN"
    # The folds it finished are still shown, with their mean ± std computed here.
    assert _rows(out.stdout)["f1"][-1] == "0.9000 ± 0.0816"
    as_json = kiln("jobs", "show", job.id, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["state"] == "failed"


def test_show_a_job_in_its_refit_says_refit_not_fold_none(kiln: Kiln, db: Session) -> None:
    job = _running(db, {"phase": "refit", "fold": None, "epoch": 2, "logs": {"loss": 0.25}})
    out = kiln("jobs", "show", job.id)
    assert out.exit_code == 0, out.output
    assert "now: refit epoch 2/3  loss 0.2500" in out.stdout
    assert "None" not in out.output


def test_wait_follows_a_running_job_to_its_end(
    tmp_path: Path, own_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each poll's pause moves the job on: fold 1's epochs, fold 1 done, the refit, done."""
    engine = make_engine(own_db)
    with fresh_api(tmp_path, own_db) as client, Session(engine, expire_on_commit=False) as db:
        kiln = through(client, monkeypatch)
        job = _running(
            db, {"phase": "cv", "fold": 1, "epoch": 1, "logs": {"loss": 0.7, "val_accuracy": 0.5}}
        )
        steps: Iterator[Callable[[], None]] = iter(
            [
                lambda: _beat(
                    db, job, {"phase": "cv", "fold": 1, "epoch": 2, "logs": {"loss": 0.6}}
                ),
                lambda: _fold(db, job, 1),
                lambda: _beat(db, job, {"phase": "refit", "fold": None, "epoch": 1, "logs": {}}),
                lambda: _finish(db, job),
            ]
        )
        monkeypatch.setattr(follow, "sleep", lambda _s: next(steps)())
        out = kiln("jobs", "show", job.id, "--wait")
    engine.dispose()
    assert out.exit_code == 0, out.output
    assert next(steps, None) is None  # it polled until the job ended, and no further
    # Not a terminal: no bars, a line as each fold ends, the summary on stdout.
    assert f"fold 1/3 done in 3 epochs: f1 {FOLD_F1[0]:.4f}  accuracy 0.7500" in out.stderr
    assert "refit on all the rows" in out.stderr
    assert _rows(out.stdout)["f1"] == ["0.8000", "0.8000 ± 0.0000"]
    assert "None" not in out.output


@contextlib.contextmanager
def fresh_api(home: Path, database_url: str) -> Iterator[TestClient]:
    """An API in-process that reads what a worker wrote at once: without the cache of
    polled reads, where the API has one (API_READ_CACHE_S), which would answer the same
    job for a second."""
    from services.api.app import create_app
    from services.settings import ApiSettings

    no_cache = {"api_read_cache_s": 0} if "api_read_cache_s" in ApiSettings.model_fields else {}
    with TestClient(create_app(api_settings(home, database_url, **no_cache))) as client:
        yield client


def test_bars_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, a bar per fold and one for the refit with epoch, loss and the
    validation metric; the history fills in folds the progress does not name."""
    screen = io.StringIO()
    monkeypatch.setattr(
        follow, "err", Console(file=screen, force_terminal=True, width=160, color_system=None)
    )
    job = _job_dict(
        progress={
            "phase": "cv",
            "fold": 2,
            "n_folds": 3,
            "epoch": 2,
            "epochs": 3,
            "logs": {"loss": 0.41, "val_loss": 0.52, "val_accuracy": 0.83},
        },
        folds=[_fold_dict(1)],
    )
    history = {
        "folds": [{"fold": 3, "done": False, "history": {"loss": [0.9], "val_accuracy": [0.4]}}],
        "refit": None,
    }
    with follow.Bars("j1") as bars:
        bars.update(job, history)
        assert follow._parallel(job, bars)  # fold 3 runs too: the history is needed
    text = screen.getvalue()
    assert "fold 2/3" in text
    assert "epoch 2/3" in text
    assert "loss 0.4100  val_loss 0.5200  val_accuracy 0.8300" in text
    assert "epoch 3/3 ✓" in text  # fold 1, done
    assert "loss 0.9000  val_accuracy 0.4000" in text  # fold 3, from the history
    assert "refit" in text
    assert "None" not in text


def test_fits_read_the_progress_the_history_and_the_folds() -> None:
    job = _job_dict(
        progress={
            "phase": "refit",
            "fold": None,
            "n_folds": 3,
            "epoch": 2,
            "epochs": 3,
            "logs": {"loss": 0.3},
        },
        folds=[_fold_dict(k) for k in (1, 2, 3)],
    )
    fits = {f.key: f for f in follow.fits(job)}
    assert [f.label for f in fits.values()] == ["fold 1/3", "fold 2/3", "fold 3/3", "refit"]
    assert all(fits[k].done and fits[k].epoch == 3 for k in "123")
    assert (fits["refit"].epoch, fits["refit"].done, fits["refit"].logs) == (
        2,
        False,
        {"loss": 0.3},
    )
    finished = {f.key: f for f in follow.fits({**job, "state": "succeeded", "progress": None})}
    assert finished["refit"].done


def test_a_job_without_cross_validation_has_one_fit_and_training_row_metrics() -> None:
    spec = {"k_folds": 5, "epochs": 3, "cross_validation": False}
    job = _job_dict(spec=spec, state="succeeded")
    assert [f.label for f in follow.fits(job)] == ["refit"]
    version = {"metrics": {"accuracy": {"mean": 1.0, "std": 0.0}}, "spec": spec}
    table = follow.summary(job, version)
    assert table is not None
    out = io.StringIO()
    Console(file=out, width=120).print(table)
    text = " ".join(out.getvalue().split())  # the title wraps at the table's width
    assert "no cross-validation: scores on the training rows" in text
    assert "│ accuracy │ 1.0000" in text


def test_the_validation_metric_shown() -> None:
    logs = {"loss": 0.1, "val_loss": 0.2, "val_accuracy": 0.9, "val_auc": 0.95}
    assert follow.validation_metric(logs) == "val_accuracy"
    assert follow.validation_metric(logs, "val_auc") == "val_auc"
    assert follow.validation_metric({"loss": 0.1, "val_loss": 0.2}) == "val_loss"
    assert follow.validation_metric({"loss": 0.1}) is None
    assert follow.scores({"loss": 0.1}) == "loss 0.1000"


def test_history_json_is_the_api_answer(kiln: Kiln, db: Session, client: TestClient) -> None:
    job = trained_job(db)
    out = kiln("jobs", "history", job.id, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == client.get(f"/jobs/{job.id}/history").json()
    table = kiln("jobs", "history", job.id)
    assert "fold 3" in table.stdout


def _rows(text: str) -> dict[str, list[str]]:
    """A rich table's body rows: first cell → the others."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


def _running(db: Session, progress: dict[str, Any]) -> Any:
    job = make_job(db, model_name=f"cli-run-{uuid.uuid4().hex[:8]}", spec=_spec())
    jobs.claim_job(db, job_id=job.id, worker="host:2")
    db.commit()
    _beat(db, job, progress)
    return job


def _spec() -> dict[str, Any]:
    from tests.unit.services.cli.conftest import _spec as spec

    return spec()


def _beat(db: Session, job: Any, progress: dict[str, Any]) -> None:
    assert jobs.heartbeat(
        db, job_id=job.id, attempt=1, progress={"n_folds": 3, "epochs": 3, **progress}
    )
    db.commit()


def _fold(db: Session, job: Any, k: int) -> None:
    f = _fold_dict(k)
    jobs.record_fold(
        db,
        job_id=job.id,
        attempt=1,
        fold=k,
        n_train=8,
        n_val=4,
        metrics=f["metrics"],
        history=f["history"],
    )
    db.commit()


def _finish(db: Session, job: Any) -> None:
    assert jobs.finish_job(db, job_id=job.id, attempt=1, state=JobState.SUCCEEDED)
    db.commit()


def _fold_dict(k: int) -> dict[str, Any]:
    f1 = FOLD_F1[k - 1]
    return {
        "fold": k,
        "metrics": {"f1": f1, "accuracy": f1 - 0.05},
        "history": {"loss": [0.7, 0.5, 0.4], "val_accuracy": [0.5, 0.7, f1]},
    }


def _job_dict(**fields: Any) -> dict[str, Any]:
    return {
        "id": "j1",
        "state": "running",
        "attempt": 1,
        "worker": "host:1",
        "spec": {"k_folds": 3, "epochs": 3},
        "folds": [],
        "progress": None,
        **fields,
    }


def test_submit_reads_the_spec_file_and_prints_the_202(
    kiln: Kiln, client: TestClient, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    model = f"cli-submit-{uuid.uuid4().hex[:6]}"
    args = ["jobs", "submit", "--model", model, "--dataset", "sklearn:breast_cancer"]
    out = kiln(*args, "--spec", str(spec), "--json")
    assert out.exit_code == 0, out.output
    accepted = json.loads(out.stdout)
    assert accepted["state"] == "queued"
    job = client.get(f"/jobs/{accepted['id']}").json()
    assert (job["model_name"], job["spec"]["k_folds"]) == (model, SPEC["k_folds"])
    plain = kiln(*args, "--spec", str(spec))
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith("job ")
    assert " queued: http" in plain.stdout
    quiet = kiln(*args, "--spec", str(spec), "-q")
    assert quiet.exit_code == 0, quiet.output
    assert client.get(f"/jobs/{quiet.stdout.strip()}").json()["model_name"] == model
