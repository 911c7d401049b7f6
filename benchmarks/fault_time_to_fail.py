"""Benchmark: how long a step takes to fail when S3 or MLflow is down, before and after bounding.

Eight runs of the ``trainyard`` CLI, each a fresh process, all started together (they mostly
wait, so running them side by side barely changes the figures and keeps the whole run under the
longest one):

- service: S3 (``trainyard ingest breast_cancer``: its first S3 call checks for the snapshot)
  or MLflow (``trainyard train breast_cancer``: its first MLflow call looks up the experiment);
- fault: ``refused`` (nothing listens on the port) or ``hung`` (a socket that accepts
  connections and never answers: the kernel completes the handshake, nobody reads);
- clients: ``stock`` — MLflow's own defaults (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=7``,
  ``_TIMEOUT=120``, ``_BACKOFF_FACTOR=2``) and the S3 client as trainyard configured it before
  (botocore's 60 s timeouts, 6 attempts in standard mode) — or ``bounded``: the shipped defaults
  (``TRAINYARD_SERVICE_TIMEOUT=30``, ``TRAINYARD_SERVICE_RETRIES=2``; S3 connect timeout 5 s).

Per run: ``seconds``, the time ``trainyard.cli.main`` takes to fail, measured inside the process
after the libraries are imported (imports take from 10 s on an idle machine to over a minute on
a loaded one and do not depend on the fault); ``process_seconds``, the whole process; the exit
code and the last stderr line. No server is needed: the faults are made with plain sockets on
loopback.

Usage: python benchmarks/fault_time_to_fail.py [--only s3,mlflow] [--faults refused,hung]
Writes benchmarks/results/fault_time_to_fail.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

STOCK = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "TRAINYARD_SERVICE_TIMEOUT": "60",
    "TRAINYARD_SERVICE_RETRIES": "5",
}
BOUNDED = {"TRAINYARD_SERVICE_TIMEOUT": "30", "TRAINYARD_SERVICE_RETRIES": "2"}
#: Runs the CLI after importing what it will need, and times only the call.
TIMED_CALL = """
import json, sys, time
import boto3, mlflow.sklearn, sklearn.linear_model
import trainyard.cli, trainyard.training.preflight, trainyard.training.steps
started = time.perf_counter()
code = trainyard.cli.main(sys.argv[1:])
print(json.dumps({"exit_code": code, "seconds": time.perf_counter() - started}))
"""


def refused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hung_listener() -> socket.socket:
    """A loopback socket that completes connections and never reads or answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener


def step_inputs(folder: Path) -> tuple[Path, Path]:
    """Snapshot and validation JSON the ``train`` command accepts (it reaches MLflow first)."""
    snapshot = {
        "uri": "s3://trainyard/snapshots/breast_cancer/" + "0" * 64 + ".parquet",
        "sha256": "0" * 64,
        "rows": 569,
        "window_start": "2026-06-01",
        "window_end": "2026-06-01",
        "sources": 1,
    }
    validation = {
        "success": True,
        "suite": "breast_cancer",
        "suite_sha256": "0" * 64,
        "snapshot_sha256": "0" * 64,
        "evaluated": 1,
        "failures": [],
        "warnings": [],
        "result_uri": "s3://trainyard/validation/x.json",
        "data_docs_uri": None,
    }
    paths = folder / "snapshot.json", folder / "validation.json"
    for path, body in zip(paths, (snapshot, validation), strict=True):
        path.write_text(json.dumps(body))
    return paths


def run_one(service: str, fault: str, clients: str, url: str, inputs: tuple[Path, Path]) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_HTTP_REQUEST_", "TRAINYARD_SERVICE_"))
    }
    env.update(STOCK if clients == "stock" else BOUNDED)
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_ENDPOINT_URL_S3=url if service == "s3" else "http://127.0.0.1:9",
        MLFLOW_TRACKING_URI=url if service == "mlflow" else "http://127.0.0.1:9",
        GX_ANALYTICS_ENABLED="False",
    )
    if service == "s3":
        argv = ["ingest", "breast_cancer"]
    else:
        argv = ["train", "breast_cancer", "--snapshot", str(inputs[0])]
        argv += ["--validation", str(inputs[1])]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", TIMED_CALL, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    process_seconds = time.perf_counter() - started
    timed = json.loads(done.stdout.strip().splitlines()[-1])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return {
        "service": service,
        "fault": fault,
        "clients": clients,
        "seconds": round(timed["seconds"], 1),
        "process_seconds": round(process_seconds, 1),
        "exit_code": timed["exit_code"],
        "message": lines[-1] if lines else "",
    }


def import_seconds() -> float:
    """What a CLI process spends importing before it can fail (for reading the figures)."""
    code = "import trainyard.cli, trainyard.training.steps, mlflow, boto3, sklearn"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="s3,mlflow")
    parser.add_argument("--faults", default="refused,hung")
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    hung = hung_listener()
    urls = {
        "refused": f"http://127.0.0.1:{refused_port()}",
        "hung": f"http://127.0.0.1:{hung.getsockname()[1]}",
    }
    runs = [
        (service, fault, clients)
        for service in args.only.split(",")
        for fault in args.faults.split(",")
        for clients in ("stock", "bounded")
    ]
    with tempfile.TemporaryDirectory() as folder:
        inputs = step_inputs(Path(folder))
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            futures = [
                pool.submit(run_one, service, fault, clients, urls[fault], inputs)
                for service, fault, clients in runs
            ]
            results = [future.result() for future in futures]
    hung.close()
    imports = import_seconds()

    by_case: dict[tuple[str, str], dict[str, Any]] = {}
    for result in results:
        by_case.setdefault((result["service"], result["fault"]), {})[result["clients"]] = result
    table = []
    for (service, fault), pair in by_case.items():
        stock, bounded = pair["stock"]["seconds"], pair["bounded"]["seconds"]
        table.append(
            {
                "service": service,
                "fault": fault,
                "stock_seconds": stock,
                "bounded_seconds": bounded,
                "ratio": round(stock / bounded, 1) if bounded else None,
            }
        )
    report = {
        "runs": results,
        "table": table,
        "import_seconds": imports,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fault_time_to_fail.json").write_text(json.dumps(report, indent=2))
    print(f"{'service':8} {'fault':8} {'stock s':>9} {'bounded s':>10} {'ratio':>6}")
    for row in table:
        print(
            f"{row['service']:8} {row['fault']:8} {row['stock_seconds']:9.1f} "
            f"{row['bounded_seconds']:10.1f} {row['ratio']!s:>6}"
        )
    for result in results:
        print(f"  {result['service']}/{result['fault']}/{result['clients']}: exit "
              f"{result['exit_code']}: {result['message'][:160]}")  # fmt: skip
    print(f"imports alone: {imports} s; load average {load_at_start} -> {os.getloadavg()}")


if __name__ == "__main__":
    main()
