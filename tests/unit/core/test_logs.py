"""core/logs.py: one handler, text by default and JSON lines when asked, each line with the
request or job it was written for, and TensorFlow's chatter kept out unless asked for."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import pickle
import re
import warnings

import pytest

from core import logs
from tests.logs import configured

log = logging.getLogger("kiln.test")


def test_text_is_the_default_and_shows_the_ids_only_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    with configured() as captured:
        log.info("plain")
        token = logs.request_id.set("ab12")
        log.info("in a request")
        logs.request_id.reset(token)
        token = logs.job_id.set("job-9")
        log.warning("in a job")
        logs.job_id.reset(token)
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    lines = captured.text.splitlines()
    assert re.fullmatch(rf"{stamp} INFO kiln\.test plain", lines[0]), lines[0]
    assert re.fullmatch(rf"{stamp} INFO kiln\.test \[req=ab12\] in a request", lines[1])
    assert re.fullmatch(rf"{stamp} WARNING kiln\.test \[job=job-9\] in a job", lines[2])


def test_json_lines_carry_the_process_and_both_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    settings = logs.LogSettings()
    assert settings.log_format == "json"
    with configured("worker", log_format=settings.log_format) as captured:
        log.info("outside")
        token = logs.job_id.set("j1")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed %d", 3)
        logs.job_id.reset(token)
    outside, failed = captured.lines()
    assert outside["message"] == "outside"
    assert (outside["request_id"], outside["job_id"]) == (None, None)
    assert "exc_info" not in outside
    assert failed["level"] == "ERROR"
    assert failed["logger"] == "kiln.test"
    assert failed["message"] == "failed 3"
    assert failed["process"] == "worker"
    assert failed["job_id"] == "j1"
    assert failed["exc_info"].endswith("ValueError: boom")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", failed["time"])


def test_configured_twice_writes_each_line_once(capsys: pytest.CaptureFixture[str]) -> None:
    with configured(log_format="json"):
        logs.configure(logs.LogSettings(log_format="json"), process="api")
        logs.configure(logs.LogSettings(log_format="json"), process="api")
        log.info("once")
        assert len(logging.getLogger().handlers) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if '"once"' in line]
    assert len(lines) == 1


def test_info_lines_of_kiln_show_and_uvicorn_writes_through_the_same_handler() -> None:
    uvicorn = logging.getLogger("uvicorn.access")
    own = logging.StreamHandler()
    uvicorn.addHandler(own)
    uvicorn.propagate = False
    uvicorn.setLevel(logging.INFO)  # as uvicorn --log-level info leaves it
    with configured(log_format="json") as captured:
        assert own not in uvicorn.handlers
        assert uvicorn.propagate
        assert uvicorn.level == logging.INFO
        logging.getLogger("kiln.predict").info("iris now serves version 2 (was 1)")
        token = logs.request_id.set("r-1")
        uvicorn.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", "/", "1.1", 200)
        logs.request_id.reset(token)
        logging.getLogger("some.library").info("not shown below WARNING")
    served, access = captured.lines()
    assert served["message"] == "iris now serves version 2 (was 1)"
    assert access["logger"] == "uvicorn.access"
    assert access["request_id"] == "r-1"
    assert "color_message" not in access


def test_warnings_become_lines_with_a_level() -> None:
    with configured(log_format="json") as captured, warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    (line,) = captured.lines()
    assert line["logger"] == "py.warnings"
    assert line["level"] == "WARNING"
    assert "deprecated thing" in line["message"]


def test_libraries_are_quiet_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("LOG_LIBRARIES", raising=False)
    with configured(log_format="json") as captured:
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
        for name in ("tensorflow", "tf2onnx", "absl", "h5py"):
            assert logging.getLogger(name).level == logging.ERROR
        logging.getLogger("tensorflow").warning("retracing")
        logging.getLogger("tf2onnx.tfonnx").warning("Using opset")
        logging.getLogger("tensorflow").error("a real problem")
    assert [line["message"] for line in captured.lines()] == ["a real problem"]


def test_libraries_speak_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("LOG_LIBRARIES", "1")
    with configured(log_format="json", log_libraries=logs.LogSettings().log_libraries) as c:
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
        logging.getLogger("tf2onnx.tfonnx").warning("Using opset")
    assert [line["message"] for line in c.lines()] == ["Using opset"]


def test_a_spawned_child_logs_as_its_parent_under_its_job_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with configured("worker", log_format="json"):
        token = logs.job_id.set("j7")
        parent = pickle.loads(pickle.dumps(logs.inherited()))  # as it crosses to the child
        logs.job_id.reset(token)
    assert parent is not None
    assert (parent.process, parent.job_id, parent.settings.log_format) == ("worker", "j7", "json")

    def fold_process() -> None:
        logs.adopt(parent)  # what training/parallel.py's initializer does first
        log.info("a fold")

    with configured("other"):  # the child starts with logging of its own: replaced
        contextvars.copy_context().run(fold_process)
    (line,) = [json.loads(s) for s in capsys.readouterr().err.splitlines() if "a fold" in s]
    assert (line["process"], line["job_id"]) == ("worker", "j7")
