"""services/cli/models.py and aliases.py: the `kiln models …` registry commands, run
through Typer against the real API app."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import BINARY_MLP, make_version, model_spec
from tests.unit.services.cli.conftest import Kiln
from training.report import Scored, evaluation_report


def test_alias_commands(kiln: Any, name: str, client: TestClient) -> None:
    out = kiln("models", "alias", "set", name, "production", "1", "--reason", "go")
    assert out.exit_code == 0, out.output
    assert f"{name}@production: nothing → v1" in out.output
    assert kiln("models", "alias", "set", name, "production", "2").exit_code == 0
    back = kiln("models", "alias", "rollback", name, "production")
    assert back.exit_code == 0, back.output
    assert "v2 → v1" in back.output
    assert client.get(f"/models/{name}/aliases/production").json()["version"] == 1
    history = kiln("models", "alias", "history", name)
    assert history.exit_code == 0
    assert "anonymous" in history.output  # an open Kiln; with a key: its owner
    assert "rollback to version 1" in history.output
    gone = kiln("models", "alias", "delete", name, "production")
    assert "v1 → deleted" in gone.output
    bad = kiln("models", "alias", "set", name, "Prod", "1")
    assert bad.exit_code == 1
    assert "is not valid" in bad.output
    none = kiln("models", "alias", "rollback", name, "production", "--to", "x")
    assert none.exit_code == 2


def test_tag_describe_archive_delete(kiln: Any, name: str, client: TestClient) -> None:
    assert kiln("models", "tag", name, "team", "ml").exit_code == 0
    assert kiln("models", "tag", name, "stage", "gold", "--version", "2").exit_code == 0
    assert client.get(f"/models/{name}").json()["tags"] == {"team": "ml"}
    assert client.get(f"/models/{name}/versions/2").json()["tags"] == {"stage": "gold"}
    assert kiln("models", "tag", name, "team", "--delete").exit_code == 0
    assert client.get(f"/models/{name}").json()["tags"] == {}
    assert kiln("models", "describe", name, "a model", "--version", "1").exit_code == 0
    assert client.get(f"/models/{name}/versions/1").json()["description"] == "a model"
    listed = kiln("models", "versions", name, "--tag", "stage:gold")
    assert listed.exit_code == 0, listed.output
    assert "stage=gold" in listed.output
    shown = kiln("models", "show", name, "2")
    assert shown.exit_code == 0, shown.output
    assert "tags: stage=gold" in shown.output
    assert kiln("models", "archive", name, "1").exit_code == 0
    assert client.get(f"/models/{name}/versions/1").json()["archived_at"] is not None
    assert kiln("models", "archive", name, "1", "--undo").exit_code == 0
    assert kiln("models", "delete", name, "1", "--yes").exit_code == 0
    assert client.get(f"/models/{name}/versions/1").status_code == 404


def test_compare_and_lineage(kiln: Any, name: str) -> None:
    out = kiln("models", "compare", name, "1", "2")
    assert out.exit_code == 0, out.output
    assert "0.7050 ± 0.0050" in out.output
    assert "0.700 0.710" in out.output
    assert "+0.2000" in out.output
    lineage = kiln("models", "lineage", name, "2")
    assert lineage.exit_code == 0
    assert '"seed": 0' in lineage.output


def test_retrain_queues_a_job_from_the_version(kiln: Any, name: str, client: TestClient) -> None:
    out = kiln("models", "retrain", name, "2")
    assert out.exit_code == 0, out.output
    job_id = out.output.split()[1]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "queued"
    assert job["spec"] == client.get(f"/models/{name}/versions/2").json()["spec"]
    refused = kiln("models", "retrain", name, "2", "--dataset", "sklearn:iris")
    assert refused.exit_code == 1
    assert "needs exactly 2 classes" in refused.output


def test_a_gated_alias_set_that_cannot_compare_is_refused(
    kiln: Any, name: str, client: TestClient
) -> None:
    assert kiln("models", "alias", "set", name, "production", "1").exit_code == 0
    # The two versions were trained on different datasets: neither their folds nor their
    # held-out rows are the same.
    out = kiln("models", "alias", "set", name, "production", "2", "--gate", "f1", "--alpha", "0.1")
    assert out.exit_code == 1, out.output
    said = " ".join(out.output.split())
    assert "evaluated neither on the same folds (they differ in the dataset" in said
    assert "nor on the same held-out rows" in said
    assert client.get(f"/models/{name}/aliases/production").json()["version"] == 1


def test_report_prints_each_sections_scores_and_writes_the_html(
    kiln: Kiln, db: Session, client: TestClient, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    scored = [Scored("fold", y, (0.5 * y + rng.uniform(0, 0.5, 120)).reshape(-1, 1), 1)]
    body = evaluation_report(model_spec(BINARY_MLP), scored, class_labels=None)
    name = f"cli-report-{uuid.uuid4().hex[:8]}"
    sha = client.app.state.store.put(json.dumps(body).encode())  # type: ignore[attr-defined]
    make_version(db, model_name=name, report_sha256=sha)
    make_version(db, model_name=name)
    db.commit()

    out = kiln("models", "report", name, "1", "--html", str(tmp_path))

    assert out.exit_code == 0, out.output
    (row,) = [line for line in out.stdout.splitlines() if "fold 1" in line]
    metrics = body["sections"][0]["metrics"]
    assert f"{metrics['f1']:.4f}" in row
    assert f"{body['sections'][0]['brier']:.4f}" in row
    written = tmp_path / f"{name}-v1-report.html"
    assert "<svg" in written.read_text()
    assert f"wrote {written}" in out.stderr
    again = kiln("models", "report", name, "1", "--html", str(written))
    assert again.exit_code == 4
    assert again.stderr.strip() == f"error: --html {written}: exists already; --force replaces it"
    # Version 2 has no report: the 404 says how to get one, and --write queues its job.
    missing = kiln("models", "report", name, "2")
    assert missing.exit_code == 1
    assert f"POST /models/{name}/versions/2/report" in missing.stderr
    queued = kiln("models", "report", name, "latest", "--write", "--json")
    assert queued.exit_code == 0, queued.output
    assert json.loads(queued.stdout)["state"] == "queued"
