"""Merge results.json files of the same dataset and scenario (e.g. one per seed) into one, re-summarised.

Usage: python -m components.bench.merge_results OUT_DIR IN.json [IN.json ...] [--note TEXT]
Writes OUT_DIR/results.json, results.md and results.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from components.reporting import results_document, upgrade_asr, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    documents = [upgrade_asr(json.loads(path.read_text())) for path in args.inputs]
    keys = {(d["dataset"], d["scenario"]) for d in documents}
    if len(keys) != 1:
        raise SystemExit(f"error: inputs mix datasets/scenarios: {sorted(keys)}")
    protocols = {d["asr_protocol"] for d in documents}
    if len(protocols) != 1:  # a mean over seeds would mix two different ASR scorings
        raise SystemExit(f"error: inputs mix ASR scorings: {sorted(protocols)}")
    dataset, scenario = keys.pop()
    order = list(dict.fromkeys(row["method"] for d in documents for row in d["rows"]))
    rows = sorted((row for d in documents for row in d["rows"]), key=lambda r: (r["seed"], order.index(r["method"])))
    cells = [(row["method"], row["seed"]) for row in rows]
    duplicated = sorted({cell for cell in cells if cells.count(cell) > 1})
    if duplicated:
        raise SystemExit(f"error: the same (method, seed) cell appears twice: {duplicated[:3]}")
    extra = {
        "methods": order,
        "seeds": sorted({row["seed"] for row in rows}),
        "machine": documents[0].get("machine"),
        "command": " ; ".join(dict.fromkeys(d.get("command", "?") for d in documents)),
        "note": args.note,
        "peak_rss_mb": max(d.get("peak_rss_mb") or 0 for d in documents),
    }
    document = results_document(dataset, scenario, rows, extra)
    write_results(document, args.out)
    print(f"wrote {args.out / 'results.json'} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
