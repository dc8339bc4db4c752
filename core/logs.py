"""One way every Kiln process writes its log: readable text by default, JSON lines with
``LOG_FORMAT=json``, each line carrying the request or job it was written for.

`configure` is called once at each process's entry point (the API's and the predictor's
app factories, the worker module, each spawned fold process). The ids travel in context
variables: the services' request-id middleware sets `request_id`, `workers.jobrun.run_job`
sets `job_id`; a filter on the one handler copies both onto every record, whichever
logger wrote it (uvicorn's and Celery's included). TensorFlow's and tf2onnx's own chatter
stays out of the terminal unless ``LOG_LIBRARIES`` asks for it (docs/decisions/0027).
"""

from __future__ import annotations

import logging
import logging.config
import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pythonjsonlogger.core import RESERVED_ATTRS

request_id: ContextVar[str | None] = ContextVar("kiln_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("kiln_job_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s"
# Libraries whose own logs say nothing a Kiln user acts on, unless LOG_LIBRARIES is set.
QUIET_LIBRARIES = ("tensorflow", "tf2onnx", "absl", "h5py")
# uvicorn's loggers keep their levels (--log-level) and write through our handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class LogSettings(BaseSettings):
    """`LOG_FORMAT` (text or json), `LOG_LEVEL` of Kiln's own loggers, and
    `LOG_LIBRARIES` to let TensorFlow, tf2onnx and absl write what they write."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_libraries: bool = False

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


@dataclass(frozen=True)
class Inherited:
    """What a spawned child needs to log as its parent does (`inherited`, `adopt`)."""

    settings: LogSettings
    process: str
    job_id: str | None


_configured: tuple[LogSettings, str] | None = None


class ContextFilter(logging.Filter):
    """Copies `request_id` and `job_id` onto each record (None when unset), and the
    ``context`` the text format shows: `` [req=…]``, `` [job=…]`` or nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or request_id.get()
        jid = getattr(record, "job_id", None) or job_id.get()
        record.request_id, record.job_id = rid, jid
        shown = (f"req={rid}" if rid else "", f"job={jid}" if jid else "")
        record.context = f" [{' '.join(s for s in shown if s)}]" if rid or jid else ""
        return True


def configure(settings: LogSettings, *, process: str) -> None:
    """Send every logger to one stderr handler in ``settings.log_format``; ``process``
    ("api", "predict", "worker") names the process in JSON lines. Calling it again
    replaces the handler: there is always one."""
    global _configured
    # Read by TensorFlow's C++ runtime when it loads: before any import of it, here and in
    # every process spawned from this one (they inherit the environment). "0" also lets
    # training.builder.import_keras show TensorFlow's start-up lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if settings.log_libraries else "2")
    library_level = "NOTSET" if settings.log_libraries else "ERROR"
    formatter: dict[str, Any]
    if settings.log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["levelname", "name", "message", "request_id", "job_id"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "static_fields": {"process": process},
            "timestamp": "time",
            # Attributes of a record that are not fields of the line: uvicorn's coloured
            # copy of its message, our text prefix, asyncio's task name.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message", "context", "taskName"],
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"context": {"()": ContextFilter}},
            "formatters": {"kiln": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                    "formatter": "kiln",
                    "filters": ["context"],
                }
            },
            # Other libraries say what goes wrong; Kiln and Celery also say what happens.
            "root": {"level": _at_least_warning(settings.log_level), "handlers": ["stderr"]},
            "loggers": {
                "kiln": {"level": settings.log_level},
                "celery": {"level": settings.log_level},
                **{name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
                **{name: {"level": library_level} for name in QUIET_LIBRARIES},
            },
        }
    )
    # A warning becomes a line with a time and a level, not a bare print to stderr.
    logging.captureWarnings(True)
    _configured = (settings, process)


def inherited() -> Inherited | None:
    """This process's logging, for a child it spawns; None when `configure` never ran."""
    if _configured is None:
        return None
    settings, process = _configured
    return Inherited(settings=settings, process=process, job_id=job_id.get())


def adopt(parent: Inherited | None) -> None:
    """In a spawned child: log as the parent does, under the parent's job id."""
    if parent is None:
        return
    configure(parent.settings, process=parent.process)
    job_id.set(parent.job_id)


def _at_least_warning(level: str) -> str:
    return level if logging.getLevelName(level) > logging.WARNING else "WARNING"
