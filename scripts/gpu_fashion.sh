#!/usr/bin/env bash
# Fashion-MNIST core matrix on a lent GPU: one process per (scenario, seed), results merged afterwards by
# components/bench/merge_results.py. Needs the wheels in .whl (pydantic, xgboost-cpu) and the IDX files in .fmnist.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
out=${OUT:-artifacts/gpu-fashion}
methods=original,retrain,mixunlearn,mixunlearn_agnostic,lmix,mixunlearn_no_real,mixunlearn_no_mix,mixunlearn_agnostic_no_sharpen
pids=()
for scenario in class:0 data:0.4:5-9; do
  for seed in 0 1 2; do
    name=$(echo "$scenario" | tr ':.' '__')-seed$seed
    python3 -m components.cli bench --dataset fashion_mnist --data-dir .fmnist --scenario "$scenario" \
      --methods $methods --seeds $seed --out /tmp/gf/$name --set bench.cache_dir=/tmp/cache > /tmp/gf-$name.log 2>&1 &
    pids+=($!)
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
mkdir -p "$out"
for d in /tmp/gf/*; do cp "$d/results.json" "$out/$(basename "$d").json"; done
tail -n 3 /tmp/gf-*.log
exit $status
