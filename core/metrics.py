"""Prometheus in Kiln's processes: what one scrape answers, for one process or, in
prometheus_client's multiprocess mode, for every process that shares a metrics folder.

Multiprocess mode is prometheus_client's own: set PROMETHEUS_MULTIPROC_DIR to an empty
folder before any Kiln process starts, and each process writes its values there. `kiln
up` and the worker's entry point do it for the processes they start (docs/decisions/0026).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.registry import Collector

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    # prometheus_client reads the same variable when it is imported; Kiln only follows it.
    return os.environ.get(MULTIPROC_DIR) or None


def scrape_registry(process: CollectorRegistry, *collectors: Collector) -> CollectorRegistry:
    """A registry to generate a scrape from: ``process``'s metrics (or every process's,
    in multiprocess mode) and ``collectors``, which read their values at scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(process)
    for collector in collectors:
        registry.register(collector)
    return registry


def empty_folder(path: Path) -> Path:
    """``path`` created empty: a multiprocess folder must not keep an earlier run's files."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def process_exited(pid: int) -> None:
    """Drop the live gauges of a process that ended (its counters stay in the totals)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
