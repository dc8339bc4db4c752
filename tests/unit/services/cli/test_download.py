"""`kiln models download`: the ONNX file of a version (by number or alias), streamed to a
file and checked against the sha256 the registry records."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from services import cli
from tests.factories import make_version
from tests.unit.services.cli.conftest import Kiln

ONNX = b"\x08\x07onnx model bytes " + uuid.uuid4().bytes * 1000


@pytest.fixture
def model(db: Session, client: TestClient) -> str:
    """A model whose version 1's ONNX file is in the API's artifact store."""
    name = f"cli-dl-{uuid.uuid4().hex[:8]}"
    sha = client.app.state.store.put(ONNX)  # type: ignore[attr-defined]
    make_version(db, model_name=name, onnx_sha256=sha, onnx_size_bytes=len(ONNX))
    db.commit()
    return name


def test_download_writes_the_checked_file(kiln: Kiln, model: str, tmp_path: Path) -> None:
    out = kiln("models", "download", model, "1", "--output", str(tmp_path))
    assert out.exit_code == 0, out.output
    written = tmp_path / f"{model}-v1.onnx"
    assert hashlib.sha256(written.read_bytes()).hexdigest() == hashlib.sha256(ONNX).hexdigest()
    assert f"{len(ONNX)} bytes written to {written}" in out.stdout
    assert [p.name for p in tmp_path.iterdir()] == [written.name]  # no temporary file left


def test_download_by_alias_to_a_file(kiln: Kiln, model: str, tmp_path: Path) -> None:
    assert kiln("models", "alias", "set", model, "production", "1").exit_code == 0
    target = tmp_path / "model.onnx"
    out = kiln("models", "download", model, "production", "-o", str(target))
    assert out.exit_code == 0, out.output
    assert target.read_bytes() == ONNX
    again = kiln("models", "download", model, "production", "-o", str(target))
    assert again.exit_code == 4
    assert again.stderr.strip() == f"error: --output {target}: exists already; --force replaces it"
    forced = kiln("models", "download", model, "latest", "-o", str(target), "--force")
    assert forced.exit_code == 0, forced.output


def test_download_of_a_missing_version_or_alias(kiln: Kiln, model: str, tmp_path: Path) -> None:
    for ref in ("7", "canary"):
        out = kiln("models", "download", model, ref, "-o", str(tmp_path))
        assert out.exit_code == 1
        assert out.stderr.startswith("error: 404 Not Found: ")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_differs_from_its_sha256_is_not_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    recorded = "0" * 64

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/artifacts/onnx"):
            return httpx.Response(200, content=b"not the model")
        return httpx.Response(200, json={"version": 1, "artifacts": {"onnx": {"sha256": recorded}}})

    real = httpx.Client
    monkeypatch.setattr(
        httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(serve), **kw)
    )
    out = CliRunner().invoke(cli.app, ["models", "download", "m", "1", "-o", str(tmp_path)])
    assert out.exit_code == 1
    expected = hashlib.sha256(b"not the model").hexdigest()
    assert out.stderr.strip() == (
        f"error: m v1: the downloaded file's sha256 is {expected}, the registry records "
        f"{recorded}; nothing was written"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_does_not_exist(kiln: Kiln, model: str, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "model.onnx"
    out = kiln("models", "download", model, "1", "-o", str(target))
    assert out.exit_code == 4
    assert "does not exist" in out.stderr
