"""The prediction service as users run it: a uvicorn process reading a real registry
(SQLite, and PostgreSQL), spoken to by the real `tritonclient[http]` client and by a
steady loop of requests while an alias moves underneath it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from sqlalchemy import select

from bench._models import build_cnn, build_mlp, register
from registry.db import make_engine, make_sessionmaker, utcnow
from registry.models import Alias, AliasEvent, ModelVersion, RegisteredModel
from registry.settings import RegistrySettings
from tests.conftest import create_pg_database, drop_pg_database, pg_url
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Predictor:
    url: str
    database_url: str
    home: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def reference(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {session.get_inputs()[0].name: x})[0]
    return out


MLP_V1 = build_mlp(seed=0)
MLP_V2 = build_mlp(seed=1)
CNN = build_cnn(seed=0)
BROKEN = (b"this is not an ONNX graph", MLP_V1[1])


def move_alias(database_url: str, model: str, alias: str, version: int) -> None:
    """What the API's alias route writes: the Alias row and an AliasEvent, one commit."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            rm = session.scalars(select(RegisteredModel).where(RegisteredModel.name == model)).one()
            mv = session.scalars(
                select(ModelVersion).where(
                    ModelVersion.registered_model_id == rm.id, ModelVersion.version == version
                )
            ).one()
            row = session.scalars(
                select(Alias).where(Alias.registered_model_id == rm.id, Alias.name == alias)
            ).first()
            previous: int | None = None
            if row is None:
                session.add(Alias(registered_model_id=rm.id, name=alias, model_version_id=mv.id))
            else:
                previous = session.get(ModelVersion, row.model_version_id).version  # type: ignore[union-attr]
                row.model_version_id = mv.id
                row.updated_at = utcnow()
            session.add(
                AliasEvent(
                    registered_model_id=rm.id,
                    alias=alias,
                    from_version=previous,
                    to_version=version,
                    actor="test",
                )
            )
            session.commit()
    finally:
        engine.dispose()


def archive(database_url: str, model: str, version: int) -> None:
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            mv = session.scalars(
                select(ModelVersion)
                .join(RegisteredModel)
                .where(RegisteredModel.name == model, ModelVersion.version == version)
            ).one()
            mv.archived_at = utcnow()
            session.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def predictor(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Predictor]:
    home = tmp_path_factory.mktemp("predict")
    pg_name = create_pg_database() if request.param == "postgresql" else None
    database_url = pg_url(pg_name) if pg_name else ""
    database_url = RegistrySettings(kiln_home=home, database_url=database_url).database_url
    for onnx_bytes, signature in (MLP_V1, MLP_V2, BROKEN):
        register(home, "mlp", onnx_bytes, signature, database_url=database_url)
    register(home, "digits", *CNN, database_url=database_url)
    register(home, "old", *MLP_V1, database_url=database_url)
    register(home, "old", *MLP_V2, database_url=database_url)
    archive(database_url, "old", 2)
    move_alias(database_url, "mlp", "production", 1)

    port = free_port()
    log = home / "predict.log"
    env = {
        **os.environ,
        "KILN_HOME": str(home),
        "DATABASE_URL": database_url,
        "PREDICT_DEVICE": "auto",
        "PREDICT_PRELOAD": "mlp@production,digits",
        "PREDICT_REFRESH_INTERVAL_S": "0.5",
        "PREDICT_MAX_REQUEST_BYTES": "65536",
        # The protocol is what this file tests; keys on the predictor, the fast path
        # included, are tested on the whole stack (test_end_to_end.py).
        "KILN_AUTH": "off",
    }
    command = [sys.executable, "-m", "uvicorn", "services.predict.app:app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    predictor = Predictor(url, database_url, home, log, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"predictor exited:\n{predictor.log_tail()}"
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready:\n{predictor.log_tail()}"
            time.sleep(0.1)
        yield predictor
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if pg_name:
            drop_pg_database(pg_name)


@pytest.fixture
def client(predictor: Predictor) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(predictor.url.removeprefix("http://"))
    yield c
    c.close()


def test_tritonclient_server_and_model_metadata(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    server = client.get_server_metadata()
    assert server["name"] == "kiln"
    assert "binary_tensor_data" in server["extensions"]

    meta = client.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    # The provider ORT really gave a session that asked for CUDA first: CPU on a machine
    # without a usable GPU (this one), even where onnxruntime-gpu lists CUDA.
    wanted = [p for p in ("CUDAExecutionProvider",) if p in ort.get_available_providers()]
    given = ort.InferenceSession(CNN[0], providers=[*wanted, "CPUExecutionProvider"])
    assert meta["parameters"]["execution_provider"] == given.get_providers()[0]
    assert meta["parameters"]["kind"] == "image"

    assert client.is_model_ready("mlp@production")
    assert client.get_model_metadata("mlp@production")["parameters"]["alias"] == "production"
    assert client.is_model_ready("mlp", model_version="2")
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize(
    ("model", "version", "onnx_bytes", "item"),
    [
        ("mlp", "1", MLP_V1[0], (8,)),
        ("digits", "", CNN[0], (8, 8, 1)),
    ],
)
def test_tritonclient_infer_json_and_binary(
    client: triton.InferenceServerClient,
    model: str,
    version: str,
    onnx_bytes: bytes,
    item: tuple[int, ...],
    binary: bool,
) -> None:
    x = np.random.default_rng(3).normal(size=(5, *item)).astype(np.float32)
    tensor = triton.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    output = triton.InferRequestedOutput("output", binary_data=binary)
    result = client.infer(model, [tensor], model_version=version, outputs=[output])
    np.testing.assert_allclose(result.as_numpy("output"), reference(onnx_bytes, x), atol=1e-5)
    assert result.get_response()["model_version"] == (version or "1")


def test_tritonclient_infer_through_an_alias(client: triton.InferenceServerClient) -> None:
    x = np.random.default_rng(4).normal(size=(2, 8)).astype(np.float32)
    tensor = triton.InferInput("features", [2, 8], "FP64")
    tensor.set_data_from_numpy(x.astype(np.float64))
    result = client.infer("mlp@production", [tensor])
    np.testing.assert_allclose(result.as_numpy("output"), reference(MLP_V1[0], x), atol=1e-5)


def test_tritonclient_errors_name_what_was_expected(
    client: triton.InferenceServerClient,
) -> None:
    tensor = triton.InferInput("features", [1, 7], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 7), np.float32))
    with pytest.raises(triton.InferenceServerException, match=r"expects shape \[-1, 8\]"):
        client.infer("mlp", [tensor], model_version="1")
    with pytest.raises(triton.InferenceServerException, match="alias 'staging' of model 'mlp'"):
        client.infer("mlp@staging", [tensor])


def test_newest_version_skips_archived_and_archived_is_served_by_number(
    predictor: Predictor,
) -> None:
    body = {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": [0] * 8}]}
    newest = httpx.post(f"{predictor.url}/v2/models/old/infer", json=body)
    assert newest.json()["model_version"] == "1"
    archived = httpx.post(f"{predictor.url}/v2/models/old/versions/2/infer", json=body)
    assert archived.status_code == 200
    assert archived.json()["model_version"] == "2"


def _steady_requests(url: str, stop: threading.Event, seen: list[tuple[float, int, str]]) -> None:
    x = np.random.default_rng(5).normal(size=(1, 8)).astype(np.float32)
    body = {
        "inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": x.tolist()}]
    }
    with httpx.Client(base_url=url, timeout=5) as c:
        while not stop.is_set():
            try:
                r = c.post("/v2/models/mlp@production/infer", json=body)
                version = r.json().get("model_version", "") if r.status_code == 200 else r.text
                seen.append((time.monotonic(), r.status_code, version))
            except httpx.HTTPError as exc:
                seen.append((time.monotonic(), 0, repr(exc)))


def test_alias_move_reaches_the_predictor_without_failing_a_request(
    predictor: Predictor,
) -> None:
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()
    loop = threading.Thread(target=_steady_requests, args=(predictor.url, stop, seen))
    loop.start()
    try:
        time.sleep(1.0)
        move_alias(predictor.database_url, "mlp", "production", 2)
        moved_at = time.monotonic()
        time.sleep(3.0)
    finally:
        stop.set()
        loop.join(timeout=10)

    failures = [s for s in seen if s[1] != 200]
    assert not failures, failures[:5]
    before = [v for t, _, v in seen if t < moved_at]
    assert before
    assert set(before) == {"1"}
    first_v2 = next(t for t, _, v in seen if v == "2")
    assert first_v2 - moved_at < 2.0
    # Once switched, it stays switched: no answer from v1 after the first from v2.
    assert {v for t, _, v in seen if t > first_v2} == {"2"}

    # v3's ONNX is broken: moving the alias there keeps v2 serving, and says why.
    move_alias(predictor.database_url, "mlp", "production", 3)
    time.sleep(2.0)
    body = {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": [0] * 8}]}
    still = httpx.post(f"{predictor.url}/v2/models/mlp@production/infer", json=body)
    assert still.status_code == 200
    assert still.json()["model_version"] == "2"
    meta: dict[str, Any] = httpx.get(f"{predictor.url}/v2/models/mlp@production").json()
    assert meta["parameters"]["pending_version"] == 3
    assert "ONNX Runtime cannot load model 'mlp' version 3" in meta["parameters"]["pending_error"]
    metrics = httpx.get(f"{predictor.url}/metrics").text
    assert (
        'kiln_predict_alias_switch_failures_total{ref="mlp@production",version="3"} 1.0' in metrics
    )
    assert "mlp@production moved to version 3, which cannot be served" in predictor.log_tail()

    # Moving it back to a good version clears the report.
    move_alias(predictor.database_url, "mlp", "production", 1)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        meta = httpx.get(f"{predictor.url}/v2/models/mlp@production").json()
        if meta["versions"] == ["1"]:
            break
        time.sleep(0.1)
    assert meta["versions"] == ["1"]
    assert "pending_error" not in meta["parameters"]


def test_body_over_the_limit_is_413_declared_or_streamed(predictor: Predictor) -> None:
    x = np.full((2000, 8), 0.5, np.float32)
    body = (
        b'{"inputs": [{"name": "features", "shape": [2000, 8], "datatype": "FP32", "data": '
        + str(x.ravel().tolist()).encode()
        + b"}]}"
    )
    assert len(body) > 65536
    url = f"{predictor.url}/v2/models/mlp/versions/1/infer"
    declared = httpx.post(url, content=body)
    assert declared.status_code == 413
    assert declared.json() == {
        "error": f"request body of {len(body)} bytes exceeds the limit of 65536 bytes "
        "(PREDICT_MAX_REQUEST_BYTES)"
    }
    streamed = httpx.post(url, content=iter([body[:40000], body[40000:]]))
    assert streamed.status_code == 413
    assert "exceeds the limit of 65536 bytes" in streamed.json()["error"]
    metrics = httpx.get(f"{predictor.url}/metrics").text
    assert 'route="/v2/models/{name}/versions/{version}/infer",status="413"' in metrics
