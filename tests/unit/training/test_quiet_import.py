"""training.builder.import_keras keeps TensorFlow's start-up lines (oneDNN, absl) out of
the terminal unless TF_CPP_MIN_LOG_LEVEL is 0 (LOG_LIBRARIES): they are written to fd 2
while TensorFlow loads, whatever that variable says (tensorflow/tensorflow#100442)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

IMPORT = "from training.builder import import_keras; print(import_keras().__version__)"


def _stderr_of_import(level: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": level}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[3],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("3."), done.stdout
    return done.stderr


def test_tensorflow_start_up_lines_are_kept_out_unless_asked_for() -> None:
    loud = _stderr_of_import("0")
    if "absl::InitializeLog" not in loud:
        pytest.skip("this TensorFlow build writes no start-up lines here")
    assert _stderr_of_import("2") == ""
