"""The user's own files: a spec or rows to read as JSON, a dataset to upload, an artifact to
write. A problem with one ends the command with exit code 4 and a line naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from services.cli.errors import CliError, ExitCode


def _refuse(option: str, path: Path, why: str) -> CliError:
    return CliError(f"{option} {path}: {why}", code=ExitCode.LOCAL_FILE)


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def read_json(path: Path, option: str) -> Any:
    """The JSON in the file given with ``option`` (named in the error, as `--spec`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _refuse(option, path, _why(exc)) from None
    except UnicodeDecodeError:
        raise _refuse(option, path, "is not UTF-8 text, so not a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(
            option, path, f"is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def open_for_upload(path: Path, option: str) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise _refuse(option, path, _why(exc)) from None


def output_path(path: Path, default_name: str, *, force: bool, option: str = "--output") -> Path:
    """Where a download goes: ``path`` itself, or ``default_name`` inside it when it is a
    folder. An existing file is kept unless ``force``."""
    target = path / default_name if path.is_dir() else path
    if target.exists() and not force:
        raise _refuse(option, target, "exists already; --force replaces it")
    if not target.parent.is_dir():
        raise _refuse(option, target, f"its folder {target.parent} does not exist")
    return target


def write_failed(path: Path, exc: OSError, option: str = "--output") -> CliError:
    return _refuse(option, path, f"cannot be written: {_why(exc)}")
