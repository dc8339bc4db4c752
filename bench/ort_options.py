"""ONNX Runtime session options for the predictor, measured: threads and graph optimisation.

    .venv/bin/python bench/ort_options.py             # ~15 s
    .venv/bin/python bench/ort_options.py --calls 50000

Times `session.run` in-process (no HTTP) for the 8-12-8-1 MLP and the digits CNN at 1
and 256 rows, pinned to one core like a predictor process, for intra-op threads 1 vs
ORT's default pool and for each graph optimisation level. The predictor's choice
(services/predict/model.py: session_options) is the first row.

The default pool is not held to the pinned core: ORT sets its pool threads' affinity
itself, one per physical core (seen here: the pool thread ran on CPU 1 while the process
was pinned to CPU 0, under taskset too). Its rows use every core of the machine, so where
it is faster (the CNN at 256 rows) it is faster by taking the cores that the other
predictor processes (one per core) would use.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._models import build_cnn, build_mlp  # noqa: E402

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def time_run(session: ort.InferenceSession, x: np.ndarray, calls: int) -> float:
    name = session.get_inputs()[0].name
    for _ in range(200):
        session.run(None, {name: x})
    best = float("inf")
    # The best of three: other processes on a shared core only ever add time.
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            session.run(None, {name: x})
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    rng = np.random.default_rng(0)
    print(f"{'model':<5} {'rows':>4} {'threads':>8} {'graph opt':>9} {'us/call':>9}")
    for name, build, item in (("mlp", build_mlp, (8,)), ("cnn", build_cnn, (8, 8, 1))):
        onnx_bytes, _ = build()
        for rows in (1, 256):
            x = rng.normal(size=(rows, *item)).astype(np.float32)
            for threads, level in (
                (1, "all"),
                (0, "all"),
                (1, "extended"),
                (1, "basic"),
                (1, "off"),
            ):
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = LEVELS[level]
                session = ort.InferenceSession(
                    onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
                )
                us = time_run(session, x, args.calls if rows == 1 else args.calls // 10)
                label = "default*" if threads == 0 else str(threads)
                print(f"{name:<5} {rows:>4} {label:>8} {level:>9} {us:9.1f}")
    print(f"* ORT's own pool, one thread per physical core: all {os.cpu_count()} CPUs, not one")


if __name__ == "__main__":
    main()
