"""Fast verified deletion, measured end to end: a chain of sequential deletion batches through the real CLI
(Prefect, MLflow, DVC, Great Expectations), each followed by a Retrain audit run for the benchmark.

    python -m components.bench.deletion_chain --dataset fashion_mnist --batches 5 --batch-size 500 \\
        --first-request examples/requests/fashion-mnist-licence-withdrawal.json --class-request 0 \\
        --out docs/results/deletion-chain/fashion_mnist

A throwaway project (git + DVC + SQLite MLflow) is built under ``--project``; ``mixunlearn run`` trains the champion
once (set-up, not counted). Then each batch is one ``mixunlearn run --request FILE`` (request -> promoted model, the
whole process's wall time, measured from outside) followed by ``mixunlearn retrain-audit``, whose retrain-from-scratch
time in the same run and under the same load is the batch's reference time. Batches are ``--batches`` random
requests of ``--batch-size`` pool samples (the first one may be a shipped request), then optionally one class-level
request (every remaining sample of a class). A last ``mixunlearn run`` with nothing pending is timed too. Peak
memory is each process's maximum resident set (``/usr/bin/time -v``).

Writes ``results.json``, ``results.md`` and ``chain.png`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from components.bench.prefect_server import running_prefect_server
from components.bench.timing import Timed, timed

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("params.yaml", "tuned.yaml", "grids.yaml", "examples")


@dataclass(frozen=True)
class BatchRow:
    batch: int
    kind: str  # "sample" | "class"
    request_id: str
    samples: int
    wall_seconds: float
    peak_rss_mb: float | None
    verdict: str  # the certification line (PASS/FAIL ...)
    certified: bool
    control_certified: bool | None  # the untouched champion's certification on the same checks
    measurable: bool | None
    served_source: str  # "unlearned" | "retrain" (fallback)
    served_version: str
    audit_verdict: str
    audit_gap_laf: float | None
    audit_detail: str
    audit_promoted: bool
    retrain_seconds: float | None
    ratio_to_retrain: float | None
    audit_wall_seconds: float
    audit_peak_rss_mb: float | None


TIME_RAN_OUT = "the session's time ran out"  # why a chain rendered by --render-only stopped, unless it says
PREFECT_SERVER = "one Prefect server started for the chain (PREFECT_API_URL), as a deployment has"
EPHEMERAL_SERVER = "each run boots its own temporary Prefect server"


def cli(project: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "components.cli", *arguments, "--root", str(project), "--params", "params.yaml"]


def build_project(project: Path) -> None:
    """A fresh git repository holding the parameter files and example requests (DVC is initialised by the run)."""
    if project.exists():
        raise SystemExit(f"{project} exists: give a new --project directory")
    project.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name)
        elif source.exists():
            shutil.copy2(source, project / name)
    for command in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.name", "deletion-chain bench"],
        ["git", "config", "user.email", "bench@example.invalid"],
        ["git", "add", "."],
        ["git", "commit", "-q", "-m", "bench project"],
    ):
        subprocess.run(command, cwd=project, check=True)


def pool(project: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(project / "data" / dataset / "pool.npz", allow_pickle=False) as archive:
        return archive["ids"].astype(str), archive["labels"]


def write_request(path: Path, dataset: str, request_id: str, ids: Sequence[str], reason: str) -> Path:
    document = {
        "request_id": request_id,
        "dataset": dataset,
        "requester": "deletion-chain-bench",
        "reason": reason,
        "requested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ids": sorted(ids),
    }
    path.write_text(json.dumps(document, indent=1))
    return path


def registry_facts(project: Path, dataset: str) -> dict[str, Any]:
    """The champion's version tags, its pipeline run's certification metrics, and its audit reference's seconds."""
    from components.adapters.tracking import TrackingStore, default_tracking_uri

    tracking = TrackingStore(default_tracking_uri(project), "mixunlearn")
    name = f"mixunlearn-{dataset}"
    champion = tracking.get_alias(name, "champion")
    if champion is None:
        raise SystemExit("no champion after the run")
    tags = tracking.version_tags(name, champion.version)
    facts: dict[str, Any] = {"version": champion.version, "tags": tags}
    run_id = tags.get("pipeline_run_id")
    if run_id:
        metrics = tracking.run_metrics(run_id)
        controls = [
            value for key, value in metrics.items() if key.startswith("cert_control_") and key.endswith("_passed")
        ]
        facts["control_certified"] = bool(controls) and all(value == 1.0 for value in controls)
        facts["measurable"] = metrics.get("cert_measurable", float("nan")) == 1.0
        facts["certified"] = metrics.get("cert_certified", 0.0) == 1.0
    return facts


def audited_facts(project: Path, dataset: str, version: str) -> dict[str, Any]:
    """The audit's result on ``version`` and the seconds of the retrain it compared with (for a retrained fallback,
    which the audit need not retrain, the fallback's own training seconds)."""
    from components.adapters.tracking import TrackingStore, default_tracking_uri

    tracking = TrackingStore(default_tracking_uri(project), "mixunlearn")
    tags = tracking.version_tags(f"mixunlearn-{dataset}", version)
    reference = tags.get("audit_reference") or tags.get("reference_version") or ""
    seconds = None
    if "/" in reference:
        name, number = reference.rsplit("/", 1)
        seconds = float(tracking.version_tags(name, number).get("train_seconds", "nan"))
    gap = tags.get("audit_gap_laf")
    return {
        "verdict": tags.get("audit_verdict", "?"),
        "detail": tags.get("audit_detail", ""),
        "gap": float(gap) if gap else None,
        "retrain_seconds": seconds,
    }


def run_batch(project: Path, dataset: str, number: int, kind: str, request: Path, extra: Sequence[str]) -> BatchRow:
    document = json.loads(request.read_text())
    run = timed(cli(project, "run", "--request", str(request), *extra), project)
    facts = registry_facts(project, dataset)
    tags = facts["tags"]
    audit = timed(cli(project, "retrain-audit", *extra), project)
    logs = project / "bench-logs"
    logs.mkdir(exist_ok=True)
    for label, result in (("run", run), ("audit", audit)):
        (logs / f"batch-{number}-{label}.log").write_text(result.stdout + result.stderr)
    audited = audited_facts(project, dataset, facts["version"])
    after = registry_facts(project, dataset)
    retrain = audited["retrain_seconds"]
    return BatchRow(
        batch=number,
        kind=kind,
        request_id=document["request_id"],
        samples=len(document["ids"]),
        wall_seconds=run.wall_seconds,
        peak_rss_mb=run.peak_rss_mb,
        verdict=tags.get("certification", tags.get("verdict_detail", "")),
        certified=bool(facts.get("certified")),
        control_certified=facts.get("control_certified"),
        measurable=facts.get("measurable"),
        served_source=tags.get("source", "?"),
        served_version=facts["version"],
        audit_verdict=audited["verdict"],
        audit_gap_laf=audited["gap"],
        audit_detail=audited["detail"],
        audit_promoted=after["version"] != facts["version"],
        retrain_seconds=retrain,
        ratio_to_retrain=run.wall_seconds / retrain if retrain else None,
        audit_wall_seconds=audit.wall_seconds,
        audit_peak_rss_mb=audit.peak_rss_mb,
    )


def markdown(document: Mapping[str, Any]) -> str:
    lines = [
        "| Batch | Kind | Samples | Request → promoted (s) | Retrain (s) | Ratio | Peak RSS (MB) | Certified | "
        "Control certified | Served | Audit | Gap LAF to Retrain | Audit replaced it |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["batches"]:
        ratio = "–" if row["ratio_to_retrain"] is None else f"{row['ratio_to_retrain']:.3f}"
        retrain = "–" if row["retrain_seconds"] is None else f"{row['retrain_seconds']:.0f}"
        gap = "–" if row["audit_gap_laf"] is None else f"{row['audit_gap_laf']:.2f}"
        lines.append(
            f"| {row['batch']} | {row['kind']} | {row['samples']} | {row['wall_seconds']:.1f} | {retrain} | {ratio} | "
            f"{row['peak_rss_mb'] or 0:.0f} | {'yes' if row['certified'] else 'no'} | "
            f"{'yes' if row['control_certified'] else 'no'} | {row['served_source']} v{row['served_version']} | "
            f"{row['audit_verdict']} | {gap} | {'yes' if row['audit_promoted'] else 'no'} |"
        )
    idle = document["nothing_pending"] or {"wall_seconds": float("nan"), "peak_rss_mb": None}
    lines += [
        "",
        (
            f"Set-up (original model, first run): {document['setup_wall_seconds']:.0f} s. "
            if document["setup_wall_seconds"]
            else "Set-up: the champion of an earlier run of this command in the same project (not timed here). "
        )
        + f"`mixunlearn run` with nothing pending: {idle['wall_seconds']:.1f} s, "
        f"peak {idle['peak_rss_mb'] or 0:.0f} MB.",
        f"Command: `{document['command']}`; machine: {document['machine']}; Prefect: "
        f"{document.get('prefect', EPHEMERAL_SERVER)}.",
        *(
            [
                f"The chain was stopped after {document['stopped_after']} batches "
                f"({document.get('stopped_reason', TIME_RAN_OUT)})."
            ]
            if document.get("stopped_after")
            else []
        ),
    ]
    return "\n".join(lines) + "\n"


def plot(document: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["batches"]
    batches = [row["batch"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(batches, [row["wall_seconds"] for row in rows], label="request → promoted")
    left.plot(batches, [row["retrain_seconds"] or np.nan for row in rows], "k--o", label="one retrain")
    left.set_xlabel("batch")
    left.set_ylabel("wall seconds")
    left.legend()
    right.plot(batches, [row["audit_gap_laf"] if row["audit_gap_laf"] is not None else np.nan for row in rows], "o-")
    right.axhline(document["gate_max_gap_laf"], color="red", linestyle=":", label="gate (fallback above)")
    right.set_xlabel("batch")
    right.set_ylabel("gap (LAF) to Retrain of the same data")
    right.legend()
    figure.suptitle(f"{document['dataset']}: sequential deletion batches and their Retrain audits")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--first-request", type=Path, default=None, help="a shipped request as batch 1")
    parser.add_argument("--class-request", type=int, default=None, help="also forget this whole class")
    parser.add_argument("--class-after", type=int, default=None, help="the class batch after this many batches")
    parser.add_argument(
        "--reuse-project", action="store_true", help="continue in an existing --project whose champion is trained"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --reuse-project: keep the batches in --out/results.json and run only the missing ones",
    )
    parser.add_argument(
        "--prefect-server",
        action="store_true",
        help="run every command against one Prefect server started for the chain (as a deployment has one), "
        "instead of each run booting its own temporary server",
    )
    parser.add_argument("--seed", type=int, default=0, help="draws the random requests")
    parser.add_argument("--project", type=Path, default=Path("/tmp/mixunlearn-deletion-chain"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--render-only", action="store_true", help="write results.md and chain.png from --out/results.json"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        document = json.loads((args.out / "results.json").read_text())
        if document.get("nothing_pending") is None and args.project.exists():
            extra = [item for override in args.overrides for item in ("--set", override)]
            idle = timed(cli(args.project, "run", *extra, "--set", f"base.dataset={args.dataset}"), args.project)
            document["nothing_pending"] = {
                "wall_seconds": idle.wall_seconds,
                "peak_rss_mb": idle.peak_rss_mb,
                "stdout": idle.stdout,
            }
            document["stopped_after"] = len(document["batches"])
            (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
        (args.out / "results.md").write_text(markdown(document))
        plot(document, args.out / "chain.png")
        sys.stdout.write(markdown(document))
        return 0
    if args.resume and not (args.reuse_project and (args.out / "results.json").is_file()):
        parser.error("--resume continues a chain in its project: give --reuse-project and an --out with results.json")
    if args.batches < 1 or args.batch_size < 2:
        parser.error("--batches must be >= 1 and --batch-size >= 2")
    if args.reuse_project and not (args.project / "mlflow").exists():
        parser.error(f"--reuse-project: {args.project} has no trained champion")
    if args.prefect_server:
        with running_prefect_server(args.project.parent / f"{args.project.name}-prefect") as environment:
            os.environ.update(environment)  # every timed command inherits it
            return run_chain(args, argv)
    return run_chain(args, argv)


def run_chain(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The set-up (unless reused), the batches, each followed by its Retrain audit, and the idle run."""
    extra = [item for override in args.overrides for item in ("--set", override)]
    extra += ["--set", f"base.dataset={args.dataset}"]
    if args.reuse_project:
        setup = Timed(0.0, None, "reused")
    else:
        build_project(args.project)
        setup = timed(cli(args.project, "run", *extra), args.project)
    previous = json.loads((args.out / "results.json").read_text()) if args.resume else None
    rows: list[BatchRow] = [BatchRow(**row) for row in previous["batches"]] if previous else []
    # a resumed chain draws from the pool its earlier batches left, with a stream of its own
    rng = np.random.default_rng([args.seed, len(rows)] if rows else args.seed)
    requests = args.project / "bench-requests"
    requests.mkdir(exist_ok=True)
    class_after = args.batches if args.class_after is None else args.class_after
    from components.config import load_config

    config = load_config(args.project / "params.yaml", [f"base.dataset={args.dataset}", *args.overrides])
    document: dict[str, Any] = {
        "dataset": args.dataset,
        "command": (f"{previous['command']}; resumed: " if previous else "")
        + "python -m components.bench.deletion_chain "
        + " ".join(argv or sys.argv[1:]),
        "machine": f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPU cores, no GPU",
        "prefect": PREFECT_SERVER if args.prefect_server else EPHEMERAL_SERVER,
        "setup_wall_seconds": previous["setup_wall_seconds"] if previous else setup.wall_seconds,
        "setup_peak_rss_mb": previous["setup_peak_rss_mb"] if previous else setup.peak_rss_mb,
        "gate_max_gap_laf": config.verify.max_gap_laf,
        "batches": [asdict(row) for row in rows],
        "nothing_pending": None,
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def record(row: BatchRow) -> None:
        """Keep every finished batch on disk at once: a long chain may be stopped part-way."""
        rows.append(row)
        document["batches"] = [asdict(r) for r in rows]
        (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
        sys.stdout.write(json.dumps(asdict(row)) + "\n")
        sys.stdout.flush()

    def class_done() -> bool:
        return any(row.request_id == f"bench-class-{args.class_request}" for row in rows)

    def class_batch() -> None:
        ids, labels = pool(args.project, args.dataset)
        chosen = ids[labels == args.class_request].tolist()
        request = write_request(
            requests / f"class-{args.class_request}.json",
            args.dataset,
            f"bench-class-{args.class_request}",
            chosen,
            "benchmark: a class",
        )
        record(run_batch(args.project, args.dataset, len(rows) + 1, "class", request, extra))

    samples_done = sum(row.kind == "sample" for row in rows)
    for number in range(samples_done + 1, args.batches + 1):
        if args.class_request is not None and len(rows) == class_after and not class_done():
            class_batch()
        if number == 1 and args.first_request is not None:
            request = requests / args.first_request.name
            shutil.copy2(args.first_request, request)
        else:
            ids, _ = pool(args.project, args.dataset)
            chosen = rng.choice(ids, size=args.batch_size, replace=False).tolist()
            request = write_request(
                requests / f"random-{number}.json", args.dataset, f"bench-random-{number}", chosen, "benchmark"
            )
        record(run_batch(args.project, args.dataset, len(rows) + 1, "sample", request, extra))
    if args.class_request is not None and not class_done():
        class_batch()
    idle = timed(cli(args.project, "run", *extra), args.project)
    document["nothing_pending"] = {
        "wall_seconds": idle.wall_seconds,
        "peak_rss_mb": idle.peak_rss_mb,
        "stdout": idle.stdout,
    }
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(document))
    plot(document, args.out / "chain.png")
    sys.stdout.write(markdown(document))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
