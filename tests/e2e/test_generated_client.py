"""The README's walkthrough done with nothing but the clients that openapi-python-client
generates from the committed documents (docs/openapi), against a real `kiln up` on
PostgreSQL + Redis with API keys required: upload a CSV and an NPZ, submit a job with a
full typed spec, poll it to the end, read typed metrics, retrain, compare the versions, set
and roll back an alias, and predict through both predictor routes. Every error the test
provokes must come back parsed into the documented type (`Problem`, or the predictor's
`ErrorBody`), never as `None` or an UnexpectedStatus.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from tests.e2e.conftest import Stack
from tests.generated_client import DOCUMENTS, generate, load

pytestmark = pytest.mark.e2e

TERMINAL = ("succeeded", "failed", "cancelled")


class Generated:
    """The two generated packages, imported by name as a user's code would."""

    def __init__(self, out: Path) -> None:
        generate(DOCUMENTS / "api.json", out, "kiln_api_client")
        generate(DOCUMENTS / "predict.json", out, "kiln_predict_client")
        self.api = load(out, "kiln_api_client")
        self.predict = load(out, "kiln_predict_client")

    def module(self, package: ModuleType, name: str) -> Any:
        return __import__(f"{package.__name__}.{name}", fromlist=["_"])


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return Generated(tmp_path_factory.mktemp("generated"))


def _client(package: ModuleType, url: str, token: str) -> Any:
    # An answer whose status the document does not declare raises (UnexpectedStatus).
    return package.AuthenticatedClient(base_url=url, token=token, raise_on_unexpected_status=True)


def _problem(gen: Generated, answer: Any, status: int, code: str | None = None) -> Any:
    """The answer is the typed Problem the document promises, with this status."""
    Problem = gen.module(gen.api, "models").Problem
    assert answer.status_code == status, answer.content
    assert isinstance(answer.parsed, Problem), answer.content
    assert answer.parsed.status == status
    assert answer.parsed.detail
    if code is not None:
        assert answer.parsed.code == code, answer.parsed
    return answer.parsed


def _wait(gen: Generated, api: Any, job_id: str, timeout: float = 240) -> Any:
    get_job = gen.module(gen.api, "api.jobs.jobs_get_job")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_job.sync(job_id, client=api)
        if job.state.value in TERMINAL:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end in {timeout}s: {job.state}")


def _spec(m: Any) -> Any:
    """A full spec in the generated types: every field set, none left to the server."""
    return m.ModelSpec(
        task=m.Task.BINARY,
        layers=[
            m.Dense(type_="Dense", units=16, activation=m.DenseActivation.RELU),
            m.Dropout(type_="Dropout", rate=0.1),
            m.Dense(type_="Dense", units=1, activation=m.DenseActivation.SIGMOID),
        ],
        optimizer=m.Adam(learning_rate=0.005),
        loss=m.ModelSpecLoss.BINARY_CROSSENTROPY,
        epochs=15,
        batch_size=32,
        k_folds=3,
        cross_validation=True,
        seed=7,
        validation_split=0.0,
        test_split=0.2,
        oversample=False,
        device=m.ModelSpecDevice.AUTO,
    )


@pytest.mark.parametrize("stack", ["postgres+redis"], indirect=True)
def test_the_walkthrough_through_generated_clients(stack: Stack, gen: Generated) -> None:
    token = stack.env["KILN_API_KEY"]
    api = _client(gen.api, stack.api, token)
    predictor = _client(gen.predict, stack.predict, token)
    m = gen.module(gen.api, "models")
    types = gen.module(gen.api, "types")
    datasets = gen.module(gen.api, "api.datasets.datasets_upload_dataset")

    # With a key the API does not know: a typed 401, not None.
    stranger = _client(gen.api, stack.api, "kiln_not-a-key")
    list_datasets = gen.module(gen.api, "api.datasets.datasets_list_datasets")
    _problem(gen, list_datasets.sync_detailed(client=stranger), 401)

    # Upload a CSV and an NPZ.
    frame = load_breast_cancer(as_frame=True).frame
    features = [c for c in frame.columns if c != "target"]
    csv = m.BodyDatasetsUploadDataset(
        file=types.File(
            payload=io.BytesIO(frame.to_csv(index=False).encode()),
            file_name="cancer.csv",
            mime_type="text/csv",
        ),
        target="target",
    )
    table = datasets.sync(client=api, body=csv)
    assert isinstance(table, m.DatasetRead), table
    assert table.kind == m.DataKind.TABLE
    assert table.n_rows == len(frame)

    digits = load_digits()
    npz = io.BytesIO()
    np.savez(npz, x=digits.images, y=digits.target)
    npz.seek(0)
    images = datasets.sync(
        client=api,
        body=m.BodyDatasetsUploadDataset(
            file=types.File(payload=npz, file_name="digits.npz", mime_type="application/zip")
        ),
    )
    assert isinstance(images, m.DatasetRead), images
    assert images.kind == m.DataKind.IMAGE
    assert images.shape == [len(digits.images), 8, 8, 1]

    # A bad query and a bad upload: typed 422s that say what was wrong.
    _problem(gen, list_datasets.sync_detailed(client=api, limit=0), 422)
    broken = m.BodyDatasetsUploadDataset(
        file=types.File(payload=io.BytesIO(b"a,b\n1,2\n"), file_name="t.csv"),
        target="nope",
    )
    assert "nope" in _problem(gen, datasets.sync_detailed(client=api, body=broken), 422).detail

    # Submit a job with a full typed spec; a spec the server refuses names its field.
    submit = gen.module(gen.api, "api.jobs.jobs_submit_job")
    bad = _spec(m)
    bad.epochs = 0
    refused = _problem(
        gen,
        submit.sync_detailed(
            client=api, body=m.JobCreate(dataset=table.id, model_name="gc-cancer", spec=bad)
        ),
        422,
    )
    assert isinstance(refused.errors, list)
    assert any("epochs" in problem.loc for problem in refused.errors), refused.errors
    accepted = submit.sync(
        client=api, body=m.JobCreate(dataset=table.id, model_name="gc-cancer", spec=_spec(m))
    )
    assert isinstance(accepted, m.JobAccepted), accepted
    job = _wait(gen, api, accepted.id)
    assert job.state == m.JobState.SUCCEEDED, job.reason
    _problem(
        gen,
        gen.module(gen.api, "api.jobs.jobs_get_job").sync_detailed("no-such-job", client=api),
        404,
    )

    # Typed metrics: the mean and std of each metric over the folds, each fold's own.
    get_version = gen.module(gen.api, "api.models.models_get_version")
    v1 = get_version.sync("gc-cancer", 1, client=api)
    assert isinstance(v1, m.ModelVersionRead), v1
    f1 = v1.metrics["f1"]
    assert isinstance(f1, m.MetricSummary)
    assert 0.8 < f1.mean <= 1.0
    assert f1.std >= 0.0
    assert len(v1.folds) == 3
    assert v1.test_metrics is not None

    # Retrain it into version 2, and compare the two.
    retrain = gen.module(gen.api, "api.models.models_retrain_version")
    again = retrain.sync("gc-cancer", 1, client=api)
    assert isinstance(again, m.JobAccepted), again
    assert _wait(gen, api, again.id).state == m.JobState.SUCCEEDED
    compare = gen.module(gen.api, "api.models.models_compare_versions")
    compared = compare.sync("gc-cancer", client=api, versions="1,2")
    assert isinstance(compared, m.CompareRead), compared
    assert compared.versions == [1, 2]
    rows = compared.metrics["f1"]
    assert [row.version for row in rows] == [1, 2]
    assert rows[1].diff_from_baseline == pytest.approx(rows[1].mean - rows[0].mean)

    # Set an alias, move it, roll it back; an alias to a version that does not exist is a 404.
    set_alias = gen.module(gen.api, "api.models.models_set_alias")
    rollback = gen.module(gen.api, "api.models.models_rollback_alias")
    get_alias = gen.module(gen.api, "api.models.models_get_alias")
    for version in (1, 2):
        moved = set_alias.sync(
            "gc-cancer", "production", client=api, body=m.AliasSet(version=version)
        )
        assert isinstance(moved, m.AliasEventRead), moved
    _problem(
        gen,
        set_alias.sync_detailed("gc-cancer", "production", client=api, body=m.AliasSet(version=99)),
        404,
    )
    back = rollback.sync("gc-cancer", "production", client=api, body=m.AliasRollback())
    assert isinstance(back, m.AliasEventRead), back
    assert get_alias.sync("gc-cancer", "production", client=api).version == 1
    _problem(
        gen,
        rollback.sync_detailed("gc-cancer", "staging", client=api, body=m.AliasRollback()),
        404,
    )

    # Predict through both routes of the predictor, on the alias.
    pm = gen.module(gen.predict, "models")
    X = frame[features].to_numpy(np.float32)[:3]
    named = gen.module(gen.predict, "api.predict.predict_predict")
    rows_body = pm.PredictRequest(
        rows=[
            pm.PredictRequestRowsItem.from_dict(dict(zip(features, map(float, x), strict=True)))
            for x in X
        ]
    )
    answer = _eventually(
        lambda: named.sync_detailed("gc-cancer@production", client=predictor, body=rows_body)
    )
    assert isinstance(answer.parsed, pm.PredictResponse), answer.content
    # The alias resolved to the version it was rolled back to.
    assert answer.parsed.model_version == 1
    assert answer.parsed.model_name == "gc-cancer"
    labels = [p.label for p in answer.parsed.predictions]
    assert set(labels) <= {0, 1}
    infer = gen.module(gen.predict, "api.v2.v2_infer")
    tensor = pm.InferInput(
        name="features", shape=[3, len(features)], datatype="FP32", data=X.ravel().tolist()
    )
    out = infer.sync(
        "gc-cancer@production", client=predictor, body=pm.InferRequest(inputs=[tensor])
    )
    assert isinstance(out, pm.InferResponse), out
    assert out.model_version == "1"
    probabilities = {o.name: o for o in out.outputs}
    assert probabilities, out
    # The named-feature route's label agrees with the tensor route's probability.
    p = np.asarray(next(iter(probabilities.values())).data, dtype=float).reshape(3, -1)[:, -1]
    assert labels == [int(v >= 0.5) for v in p]

    # The predictor's errors parse into its ErrorBody.
    missing = pm.PredictRequest(rows=[pm.PredictRequestRowsItem.from_dict({features[0]: 1.0})])
    wrong = named.sync_detailed("gc-cancer@production", client=predictor, body=missing)
    assert wrong.status_code == 422
    assert isinstance(wrong.parsed, pm.ErrorBody)
    assert features[1] in wrong.parsed.error
    unknown = infer.sync_detailed(
        "no-such-model", client=predictor, body=pm.InferRequest(inputs=[tensor])
    )
    assert unknown.status_code == 404
    assert isinstance(unknown.parsed, pm.ErrorBody)
    bad_shape = pm.InferInput(name="features", shape=[1, 3], datatype="FP32", data=[1.0, 2.0, 3.0])
    shaped = infer.sync_detailed(
        "gc-cancer", client=predictor, body=pm.InferRequest(inputs=[bad_shape])
    )
    assert shaped.status_code == 400
    assert isinstance(shaped.parsed, pm.ErrorBody)


def _eventually(call: Any, timeout: float = 30) -> Any:
    """The predictor follows aliases on its refresher's timer: retry a 404 for a while."""
    deadline = time.monotonic() + timeout
    while True:
        answer = call()
        if answer.status_code != 404 or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)
