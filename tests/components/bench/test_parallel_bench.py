"""``run_bench(jobs=2)`` (spawned worker processes) gives the same rows as ``jobs=1``, except the timings."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from components.bench.harness import BenchRequest, run_bench
from components.config import load_config

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
SHRINK = ["train.recipes.digits.epochs=2", "base.device=cpu"]
METHODS = ("original", "retrain", "mixunlearn")
SEEDS = (0, 1)
JOBS = 2

pytestmark = pytest.mark.slow  # trains and evaluates 2 seeds x 3 methods twice (~10 s)


@pytest.fixture
def worker_threads() -> Iterator[None]:
    """The thread count each worker uses (cores // jobs): float reductions run the same way in both runs, and two
    threads on a busy 2-core machine made the sequential run ~30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // JOBS))
    yield
    torch.set_num_threads(threads)


def test_parallel_rows_equal_sequential_rows_but_for_seconds(tmp_path: Path, worker_threads: None) -> None:
    # given one config and one model cache for both runs
    config = load_config(REPO_PARAMS, [*SHRINK, f"bench.cache_dir={tmp_path / 'cache'}"])
    request = BenchRequest(dataset="digits", scenario="data:0.4:5-9", methods=METHODS, seeds=SEEDS, config=config)
    streamed: list[dict[str, object]] = []
    # when: sequential first (it trains and caches the reference models), then two worker processes
    sequential = run_bench(request, tmp_path / "seq")
    parallel = run_bench(request, tmp_path / "par", on_row=streamed.append, jobs=JOBS)
    # then: the same (seed, method) order, and identical metrics
    order = [(seed_method["method"], seed_method["seed"]) for seed_method in sequential]
    assert order == [(method, seed) for seed in SEEDS for method in METHODS]
    assert [(row["method"], row["seed"]) for row in parallel] == order
    assert streamed == parallel
    for before, after in zip(sequential, parallel, strict=True):
        assert set(before) == set(after)
        metrics = sorted(set(before) - {"seconds"})
        assert {k: after[k] for k in metrics} == {k: before[k] for k in metrics}, (before["method"], before["seed"])
    # the workers wrote each seed's forget manifest, as the sequential run did
    for seed in SEEDS:
        name = f"forget-seed{seed}.json"
        assert (tmp_path / "par" / "manifests" / name).read_text() == (
            tmp_path / "seq" / "manifests" / name
        ).read_text()
    # and the two seeds really are different cells (the comparison is not vacuous): by construction each seed draws
    # its own forget set, so the manifests name different sample IDs (metrics such as train_f may still coincide)
    forget_ids = [
        set(json.loads((tmp_path / "seq" / "manifests" / f"forget-seed{seed}.json").read_text())["ids"])
        for seed in SEEDS
    ]
    assert all(forget_ids)
    assert forget_ids[0] != forget_ids[1]
