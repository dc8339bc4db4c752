"""A user's mistake or a server that does not answer ends a `kiln` command with one line on
stderr and a documented exit code (services/cli/errors.py), never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from services import cli
from services.cli import http
from services.cli.errors import ExitCode
from tests.unit.services.cli.conftest import Kiln

runner = CliRunner()


def free_port() -> int:
    """A port nothing listens on: bound, read, and closed again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (["models", "list", "--api-url"], "KILN_API_URL"),
        (["jobs", "show", "some-job", "--wait", "--api-url"], "KILN_API_URL"),
        (["predict", "iris", "--rows", "{rows}", "--predict-url"], "KILN_PREDICT_URL"),
    ],
)
def test_an_unreachable_server_is_one_line_and_exit_code_3(
    args: list[str], setting: str, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text("[]")
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(cli.app, [a.format(rows=rows) for a in args] + [url])
    assert result.exit_code == ExitCode.UNREACHABLE.value == 3
    line = one_line(result)
    assert url in line
    assert setting in line
    assert "cannot be reached" in line
    assert result.stdout == ""


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("KILN_API_URL", url)
    result = runner.invoke(cli.app, ["jobs", "list"])
    assert result.exit_code == 3
    assert url in one_line(result)


def test_a_url_without_a_scheme_names_the_setting() -> None:
    result = runner.invoke(cli.app, ["models", "list", "--api-url", "localhost:8000"])
    assert result.exit_code == 3
    line = one_line(result)
    assert "'localhost:8000' is not a URL" in line
    assert "KILN_API_URL" in line


def _served_by(monkeypatch: pytest.MonkeyPatch, handler: Any) -> None:
    """Every request of the CLI answered by ``handler`` (httpx.MockTransport), through the
    CLI's own `http.client`."""
    real = httpx.Client

    def client(**kwargs: Any) -> httpx.Client:
        return real(transport=httpx.MockTransport(handler), **kwargs)

    monkeypatch.setattr(httpx, "Client", client)


def test_a_timeout_is_one_line_and_exit_code_3(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    _served_by(monkeypatch, handler)
    result = runner.invoke(cli.app, ["models", "list", "--api-url", "http://kiln.example:8000"])
    assert result.exit_code == 3
    line = one_line(result)
    assert "http://kiln.example:8000 did not answer in time" in line
    assert "KILN_API_URL" in line


def test_an_answer_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _served_by(
        monkeypatch,
        lambda _r: httpx.Response(
            200, text="<html>a proxy</html>", headers={"content-type": "text/html"}
        ),
    )
    result = runner.invoke(cli.app, ["models", "list", "--api-url", "http://kiln.example"])
    assert result.exit_code == 1
    assert "answered 200 with text/html, not JSON" in one_line(result)


def test_an_error_page_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _served_by(
        monkeypatch, lambda _r: httpx.Response(502, text="<html>\n<h1>Bad gateway</h1>\n</html>")
    )
    result = runner.invoke(cli.app, ["jobs", "list", "--api-url", "http://kiln.example"])
    assert result.exit_code == 1
    assert one_line(result) == "error: 502 Bad Gateway: <html> <h1>Bad gateway</h1> </html>"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no such file"),
        ("{not json", "is not JSON: Expecting property name enclosed in double quotes at line 1"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_a_bad_spec_file_is_one_line_and_exit_code_4(
    tmp_path: Path, content: str | bytes | None, why: str
) -> None:
    spec = tmp_path / "spec.json"
    if isinstance(content, str):
        spec.write_text(content)
    elif isinstance(content, bytes):
        spec.write_bytes(content)
    # No server: the file is read before anything is sent.
    args = ["jobs", "submit", "--model", "m", "--dataset", "sklearn:iris", "--spec", str(spec)]
    result = runner.invoke(cli.app, [*args, "--api-url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == ExitCode.LOCAL_FILE.value == 4
    line = one_line(result)
    assert line.startswith(f"error: --spec {spec}: {why}"), line


def test_a_missing_rows_file_and_upload_file_are_one_line(tmp_path: Path) -> None:
    gone = tmp_path / "gone.csv"
    for args in (["predict", "iris", "--rows", str(gone)], ["datasets", "upload", str(gone)]):
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 4
        assert one_line(result).endswith(f"{gone}: no such file")


def test_a_422_lists_each_field_error(kiln: Kiln, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text('{"task": "binary", "loss": "mse", "epochs": 0}')
    result = kiln(
        "jobs", "submit", "--model", "m", "--dataset", "sklearn:iris", "--spec", str(spec)
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 422 Unprocessable Entity: Request invalid", result.output
    assert "  spec.layers: Field required" in lines
    assert any(
        line.startswith("  spec.epochs: Input should be greater than or equal to 1")
        for line in lines
    )
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_a_refusal_is_one_line_with_its_status_and_detail(kiln: Kiln) -> None:
    result = kiln("jobs", "show", "no-such-job")
    assert result.exit_code == 1
    line = one_line(result)
    assert line.startswith("error: 404 Not Found: ")
    assert "no-such-job" in line


def test_refusals_say_what_to_do() -> None:
    request = httpx.Request("GET", "http://kiln/models")
    unauthenticated = httpx.Response(
        401, json={"detail": "an API key is needed", "code": "key_missing"}, request=request
    )
    assert http.refused(unauthenticated).message == (
        "401 Unauthorized: an API key is needed (the CLI sends the key in KILN_API_KEY)"
    )
    limited = httpx.Response(
        429, json={"detail": "3 jobs running"}, headers={"Retry-After": "7"}, request=request
    )
    assert (
        http.refused(limited).message == "429 Too Many Requests: 3 jobs running (retry after 7 s)"
    )
    predictor = httpx.Response(503, json={"error": "model iris is loading"}, request=request)
    assert http.refused(predictor).message == "503 Service Unavailable: model iris is loading"
    fastapi_422 = httpx.Response(
        422, json={"detail": [{"loc": ["query", "limit"], "msg": "too big"}]}, request=request
    )
    assert http.refused(fastapi_422).details == ["query.limit: too big"]


def test_markup_in_a_message_is_shown_as_is(kiln: Kiln) -> None:
    result = kiln("jobs", "show", "[bold]x")
    assert result.exit_code == 1
    assert "'[bold]x'" in one_line(result)


def test_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"kiln {version('kiln')}\n"


def test_help_documents_the_exit_codes() -> None:
    result = runner.invoke(cli.app, ["--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes: 0 done; 1 the server refused" in text
    assert "3 the server cannot be reached" in text
    assert "4 a local file" in text
