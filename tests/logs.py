"""Logging as a process configures it (core.logs.configure), into a buffer, for a test;
the logging of the test run put back afterwards."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from core import logs

_TOUCHED = ("kiln", "celery", "py.warnings", *logs.UVICORN_LOGGERS, *logs.QUIET_LIBRARIES)


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line written so far, each parsed as JSON (fails on one that is not)."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@contextlib.contextmanager
def configured(process: str = "test", **settings: Any) -> Iterator[Captured]:
    """`logs.configure` with ``settings`` (LOG_FORMAT and the rest by field name) writing
    to a buffer; TF_CPP_MIN_LOG_LEVEL, the loggers it set and the root's handlers as
    they were after."""
    root = logging.getLogger()
    saved_root = (root.level, root.handlers[:])
    saved = {
        name: (logger.level, logger.handlers[:], logger.propagate, logger.disabled)
        for name in _TOUCHED
        for logger in [logging.getLogger(name)]
    }
    saved_env = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    saved_configured = logs._configured
    stream = io.StringIO()
    logs.configure(logs.LogSettings(**settings), process=process)
    # Not by swapping sys.stderr while configuring: dictConfig closes the handlers it
    # replaces, and absl's closes its stream unless that stream is sys.stderr.
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        yield Captured(stream)
    finally:
        logging.captureWarnings(False)
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.setLevel(saved_root[0])
        for handler in saved_root[1]:
            root.addHandler(handler)
        for name, (level, handlers, propagate, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate, logger.disabled = propagate, disabled
        if saved_env is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = saved_env
        logs._configured = saved_configured
