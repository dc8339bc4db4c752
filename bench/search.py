"""What a model search finds and what it costs, through `kiln up --workers 2`.

    .venv/bin/python bench/search.py [--trials 24] [--k 5] [--seeds 5] [--wall-s 900]

Starts Kiln (embedded) with two Celery workers in a temporary KILN_HOME and prints:
1. examples/cancer-search.json on breast_cancer (k folds, the trial budget, two trials at
   once; its options: each trial's folds train together, unpruned): its wall time against
   its wall-time budget, its fold fits and fold fits per minute, the winner's mean F1 over
   its folds; the same search with "prune": true (each trial's folds one by one, pruned
   between them); and examples/cancer-mlp.json trained the same way (k folds, a training
   job) as the baseline's mean F1.
2. Pruning on the same trials: for each seed, the same search with pruning off; then its
   trials, in their order, replayed through Optuna's WilcoxonPruner (the settings the
   worker uses) on the fold scores they measured: the fold fits pruning saves, and whether
   the best trial is still the one chosen. Replaying keeps the trial sequence fixed: a
   pruned search's sampler would see other histories and sample other trials, so two live
   searches could not say whether pruning lost the winner.
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.e2e_job import free_port, wait  # noqa: E402
from training.spec.search import SearchOptions  # noqa: E402
from workers.search_trial import pruner  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENDED = ("succeeded", "failed", "cancelled")


def until_done(api: str, path: str, *, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(f"{api}{path}", timeout=30).json()
        if done(body):
            return body
        time.sleep(1.0)
    raise SystemExit(f"{path} did not end in {timeout:.0f} s")


def search_ended(search: dict[str, Any]) -> bool:
    refits = search.get("refits") or []
    return search["state"] in ENDED and all(r["state"] in ENDED for r in refits)


def run_search(api: str, body: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    resp = httpx.post(f"{api}/searches", json=body, timeout=60)
    if resp.status_code != 202:
        raise SystemExit(f"search refused: {resp.status_code} {resp.text}")
    search = until_done(
        api,
        f"/searches/{resp.json()['id']}",
        done=lambda s: s["state"] in ENDED,
        timeout=timeout,
    )
    return search, time.monotonic() - started


def print_search(label: str, search: dict[str, Any], took: float, args: argparse.Namespace) -> None:
    print(
        f"{label}: {search['state']} in {took:.0f} s of a {args.wall_s:.0f} s budget; "
        f"{search['counts']}; {search['fold_fits']} fold fits, "
        f"{search['fold_fits'] / (took / 60):.1f} fold fits a minute"
    )


def replay(trials: list[dict[str, Any]], k: int, options: SearchOptions) -> tuple[int, int | None]:
    """(fold fits, best trial) of ``trials`` (complete, in order) with the pruner of
    ``options``, the worker's own (workers.search_trial.pruner)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner(options))
    fits, best, best_value = 0, None, -1.0
    for trial in trials:
        scores = [f["metrics"]["f1"] for f in sorted(trial["folds"], key=lambda f: f["fold"])]
        live = study.ask()
        for step, score in enumerate(scores):
            fits += 1
            live.report(score, step)
            if step < k - 1 and live.should_prune():
                study.tell(live, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            value = statistics.fmean(scores)
            study.tell(live, value)
            if value > best_value:
                best, best_value = trial["trial"], value
    return fits, best


def pruners(text: str) -> list[SearchOptions]:
    """ "wilcoxon:0.1,median" → the search options of each pruner to replay."""
    chosen = []
    for item in text.split(","):
        name, _, p = item.partition(":")
        fields: dict[str, Any] = {"pruner": name}
        if p:
            fields["prune_p"] = float(p)
        chosen.append(SearchOptions.model_validate(fields))
    return chosen


def print_replays(unpruned: list[dict[str, Any]], k: int, chosen: list[SearchOptions]) -> None:
    """Each unpruned search's trials replayed through each pruner."""
    for options in chosen:
        label = options.pruner + (f", p {options.prune_p}" if options.pruner == "wilcoxon" else "")
        print(f"\npruning replayed ({label}):")
        print("seed | fold fits unpruned | with pruning | saved | same best trial")
        saved, same = [], 0
        for seed, search in enumerate(unpruned):
            trials = sorted(
                (t for t in search["leaderboard"] if t["state"] == "complete"),
                key=lambda t: t["trial"],
            )
            fits = sum(len(t["folds"]) for t in trials)
            pruned_fits, best = replay(trials, k, options)
            saved.append(1 - pruned_fits / fits)
            same += best == search["best_trial"]
            print(
                f"{seed:>4} | {fits:>18} | {pruned_fits:>12} | {saved[-1]:>5.0%} | "
                f"{'yes' if best == search['best_trial'] else 'no':>15}"
            )
        print(
            f"mean fold fits saved {statistics.fmean(saved):.0%}; the same best trial in "
            f"{same} of {len(unpruned)} seeds"
        )


def from_database(url: str) -> list[dict[str, Any]]:
    """The unpruned searches an earlier run left in its registry (oldest first), as the
    API shows them."""
    from registry import searches
    from registry.db import make_engine, make_sessionmaker

    with make_sessionmaker(make_engine(url))() as session:
        rows = [
            s for s in searches.searches(session, limit=1000) if s.options.get("prune") is False
        ]
        return [
            {
                "best_trial": s.best_trial,
                "leaderboard": [
                    {
                        "trial": t.trial,
                        "state": t.outcome if t.state == "succeeded" else str(t.state),
                        "folds": [{"fold": f.fold, "metrics": f.metrics} for f in t.folds],
                    }
                    for t in s.trials
                ],
            }
            for s in reversed(rows)
        ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--wall-s", type=float, default=900.0)
    parser.add_argument(
        "--pruners",
        default="wilcoxon:0.1,wilcoxon:0.3,wilcoxon:0.5,median",
        help="Pruners to replay, comma-separated: wilcoxon:<p threshold> or median.",
    )
    parser.add_argument(
        "--replay-db",
        help="Replay the unpruned searches of an earlier run's registry (its DATABASE_URL, "
        "sqlite:///<KILN_HOME>/kiln.db) instead of running anything.",
    )
    args = parser.parse_args()
    if args.replay_db:
        print_replays(from_database(args.replay_db), args.k, pruners(args.pruners))
        return

    search_body = json.loads((ROOT / "examples/cancer-search.json").read_text())
    search_body["spec"]["k_folds"] = args.k
    search_body["budget"] = {"trials": args.trials, "parallel": 2, "wall_s": args.wall_s}
    baseline = json.loads((ROOT / "examples/cancer-mlp.json").read_text()) | {"k_folds": args.k}
    data = {"model_name": "bench-search", "dataset": "sklearn:breast_cancer"}

    home = Path(tempfile.mkdtemp(prefix="kiln-bench-search-"))
    api_port, predict_port = free_port(), free_port()
    env = {
        **os.environ,
        "KILN_HOME": str(home),
        "API_PORT": str(api_port),
        "PREDICT_PORT": str(predict_port),
        "WORKER_METRICS_PORT": "0",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    api = f"http://127.0.0.1:{api_port}"
    kiln = str(Path(sys.executable).parent / "kiln")
    log = (home / "kiln-up.log").open("wb")
    proc = subprocess.Popen([kiln, "up", "--workers", "2"], env=env, stdout=log, stderr=log)
    try:
        wait(f"{api}/healthz", proc)
        print(
            f"breast_cancer, k={args.k}, {args.trials} trials, 2 workers on "
            f"{len(os.sched_getaffinity(0))} cores"
        )
        search, took = run_search(api, {**data, **search_body}, args.wall_s + 600)
        search = until_done(
            api, f"/searches/{search['id']}", done=search_ended, timeout=args.wall_s
        )
        winner = search["leaderboard"][0]
        print_search(
            "search (the example's options: folds together, no pruning)", search, took, args
        )
        # The same search with every trial pruned between its folds, one by one.
        pruned, pruned_took = run_search(
            api,
            {
                **data,
                **search_body,
                "options": {**search_body["options"], "prune": True, "refit": False},
            },
            args.wall_s + 600,
        )
        print_search("the same, pruned (folds one by one)", pruned, pruned_took, args)
        f1 = winner["metrics"]["f1"]
        print(
            f"winner: trial {winner['trial']} {winner['params']}: "
            f"mean F1 {f1['mean']:.4f} ± {f1['std']:.4f}; "
            f"registered as version {search['refit']['model_version']}"
        )
        job = httpx.post(f"{api}/jobs", json={**data, "spec": baseline}, timeout=60).json()
        done = until_done(
            api, f"/jobs/{job['id']}", done=lambda j: j["state"] in ENDED, timeout=900
        )
        version = httpx.get(
            f"{api}/models/bench-search/versions/{done['model_version']}", timeout=30
        ).json()
        base_f1 = version["metrics"]["f1"]
        print(
            f"examples/cancer-mlp.json, k={args.k}: mean F1 {base_f1['mean']:.4f} ± "
            f"{base_f1['std']:.4f} (winner {f1['mean'] - base_f1['mean']:+.4f})"
        )

        unpruned = []
        for seed in range(args.seeds):
            body = {
                **data,
                **search_body,
                "options": {"prune": False, "seed": seed, "refit": False},
            }
            search, took = run_search(api, body, args.wall_s + 600)
            print(f"seed {seed}, pruning off: {search['fold_fits']} fold fits in {took:.0f} s")
            unpruned.append(search)
        print_replays(unpruned, args.k, pruners(args.pruners))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        log.close()


if __name__ == "__main__":
    main()
