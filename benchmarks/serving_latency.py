"""Benchmark: the model server against ``mlflow models serve``, and alias move -> served time.

An embedded stack without Airflow (SeaweedFS, MLflow server; free ports, temporary state) gets
two registered versions of a churn pipeline (``trainyard_dev.churn.register_model``), v1 the
champion. Three servers run as processes, each one uvicorn worker:

- ``trainyard serve`` with the MLflow webhook and 10 s polling (ours, prediction log on);
- ``trainyard serve`` with polling only (10 s), for the alias-follow comparison;
- ``mlflow models serve -m models:/<name>@champion --env-manager local`` (the reference);
- with ``--mlflow-one-thread``, the reference again with ``OMP_NUM_THREADS=1`` (ours limits
  OpenMP to one thread per prediction; this shows what that setting alone gives the reference).

Load, on loopback from this process (an open-loop asyncio client on raw keep-alive
connections: requests are due on a fixed schedule whatever the answers, so a slow server cannot
slow the load down, and latency counts from the due time): single-row requests
at each ``--rates`` for ``--seconds`` each, then ``--batches`` sequential requests of 1,000 rows
(200 by default, so p99 is not a single request's latency), against ours and the reference in
turn, in the same run. Our prediction log flushes as configured by default (every 10,000 rows,
so 20 flushes happen during 200 batches); the rows it wrote during the phase are recorded.
Latency is from a request's send to its answer; errors count non-200 answers and failed
connections; CPU is the server process's user+system time over the phase, and the load
generator's own CPU is reported beside it.

Then the alias moves ``--moves`` times (v1 -> v2 -> v1 ...); the time until each of our servers'
``/models`` shows the new version is measured (webhook vs polling).

Goals (issue 10): p95 <= 20 ms at 200 requests/s; not slower than ``mlflow models serve``.

Usage: python benchmarks/serving_latency.py [--rates 50 200] [--seconds 60] [--batches 200]
    [--moves 3] [--keep]
Writes benchmarks/results/serving_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PIPELINE = "churn_bench"


def write_spec(directory: Path) -> Path:
    """churn.yaml as pipeline ``churn_bench`` (its own registered model)."""
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["name"] = PIPELINE
    data["model"]["registered_name"] = PIPELINE
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PIPELINE}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        times = each.cpu_times()
        total += times.user + times.system
    return total


async def fixed_rate(url: str, body: bytes, rate: float, seconds: float) -> dict[str, Any]:
    """Send ``rate`` requests per second for ``seconds`` (open loop) and time each answer.

    A light client on raw keep-alive connections (an HTTP library costs more CPU per request
    than the servers under test on a busy 2-core host). Latency runs from each request's
    scheduled send time, so time spent waiting for a free connection counts (no coordinated
    omission). A request not answered within 30 s is an error.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    total = int(rate * seconds)
    due: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader = writer = None
        while (scheduled := await due.get()) is not None:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                writer.write(request)
                status = await asyncio.wait_for(_read_response(reader), 30)
                if status == 200:
                    latencies.append(time.perf_counter() - scheduled)
                else:
                    errors += 1
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(64)]
    client_cpu = time.process_time()
    start = time.perf_counter()
    for index in range(total):
        when = start + index / rate
        delay = when - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(when)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    figures = summarize(latencies, errors, total, time.perf_counter() - start)
    figures["client_cpu_s"] = round(time.process_time() - client_cpu, 1)
    return figures


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length framed); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def sequential(url: str, body: bytes, count: int) -> dict[str, Any]:
    """``count`` requests one after the other (the batch phase)."""
    import httpx

    latencies, errors = [], 0
    started = time.perf_counter()
    with httpx.Client(timeout=120) as client:
        for _ in range(count):
            began = time.perf_counter()
            response = client.post(url, content=body, headers={"Content-Type": "application/json"})
            if response.status_code == 200:
                latencies.append(time.perf_counter() - began)
            else:
                errors += 1
    return summarize(latencies, errors, count, time.perf_counter() - started)


def summarize(latencies: list[float], errors: int, sent: int, elapsed: float) -> dict[str, Any]:
    """p50 / p95 / p99 in ms, throughput and errors of one phase."""
    if not latencies:
        return {"sent": sent, "errors": errors}
    return {
        "sent": sent,
        "errors": errors,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "throughput_rps": round(len(latencies) / elapsed, 1),
    }


def wait_ok(url: str, timeout: float = 300) -> None:
    """Wait until ``url`` answers 200."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")


def served(url: str) -> str | None:
    import httpx

    try:
        return httpx.get(f"{url}/models", timeout=3).json()["models"][0]["version"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return None


def logged_rows(metrics_url: str) -> float:
    """Rows our server's prediction log has written to S3 so far (from its /metrics)."""
    import httpx

    name = "trainyard_serving_prediction_log_written_rows_total"
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def run_load(
    name: str, base: str, pid: int, args: argparse.Namespace, metrics_url: str | None = None
) -> dict[str, Any]:
    """Every load phase against one server (its predict URL is ``base``; ``metrics_url``: ours,
    whose prediction-log writes during the batch phase are counted)."""
    from trainyard_dev.churn import generate_day

    frame = generate_day(date(2026, 3, 1), 1000).drop(columns=["event_date", "churned"])
    single = json.dumps({"dataframe_records": json.loads(frame.head(1).to_json(orient="records"))})
    batch = json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
    results: dict[str, Any] = {}
    asyncio.run(fixed_rate(base, single.encode(), 20, 5))  # warm-up
    for rate in args.rates:
        before = cpu_seconds(pid)
        figures = asyncio.run(fixed_rate(base, single.encode(), rate, args.seconds))
        figures["server_cpu_s"] = round(cpu_seconds(pid) - before, 1)
        figures["load_average"] = os.getloadavg()
        results[f"single_row_{rate}_rps"] = figures
        print(f"{name:>22} single row @ {rate} rps: {figures}", flush=True)
    before = cpu_seconds(pid)
    logged_before = logged_rows(metrics_url) if metrics_url else None
    figures = sequential(base, batch.encode(), args.batches)
    figures["server_cpu_s"] = round(cpu_seconds(pid) - before, 1)
    if metrics_url:
        # Rows the log wrote to S3 during the phase (each flush: 10,000 rows by default).
        figures["prediction_log_rows_written"] = logged_rows(metrics_url) - logged_before
    figures["load_average"] = os.getloadavg()
    results["batch_1000_rows"] = figures
    print(f"{name:>22} 1,000-row batches: {figures}", flush=True)
    return results


def follow_times(servers: dict[str, str], versions: tuple[str, str], moves: int) -> dict:
    """Move the alias ``moves`` times; seconds until each server's /models shows the new one."""
    from mlflow import MlflowClient

    client = MlflowClient()
    times: dict[str, list[float]] = {name: [] for name in servers}
    current = versions[0]
    for _ in range(moves):
        target = versions[1] if current == versions[0] else versions[0]
        for url in servers.values():
            deadline = time.monotonic() + 120
            while served(url) != current and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(1)
        moved = time.monotonic()
        client.set_registered_model_alias(PIPELINE, "champion", target)
        pending = dict(servers)
        while pending and time.monotonic() - moved < 120:
            for name, url in list(pending.items()):
                if served(url) == target:
                    times[name].append(round(time.monotonic() - moved, 2))
                    del pending[name]
            time.sleep(0.05)
        current = target
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--moves", type=int, default=3)
    parser.add_argument(
        "--mlflow-one-thread",
        action="store_true",
        help="also load mlflow models serve run with OMP_NUM_THREADS=1",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folder")
    args = parser.parse_args()

    from trainyard_dev.churn import register_model
    from trainyard_dev.devstack import Stack
    from trainyard_dev.services import Ports, free_ports

    state = Path(tempfile.mkdtemp(prefix="trainyard-bench-serving-"))
    pipelines = state / "pipelines"
    spec_path = write_spec(pipelines)
    stack = Stack(state_dir=state / "stack", ports=Ports.free())
    processes: dict[str, subprocess.Popen] = {}
    logs = state / "logs"
    logs.mkdir(parents=True)
    try:
        stack.up(airflow=False)
        os.environ.update(stack.client_env())
        from mlflow import MlflowClient

        from trainyard.core.spec import load_spec

        spec = load_spec(spec_path)
        v1 = register_model(spec, [date(2026, 1, d) for d in (1, 2, 3)], 1000)
        v2 = register_model(spec, [date(2026, 2, d) for d in (1, 2, 3)], 1000)
        MlflowClient().set_registered_model_alias(PIPELINE, "champion", v1)
        print(f"registered {PIPELINE} v{v1} (champion) and v{v2}", flush=True)

        ours_port, polling_port, mlflow_port, mlflow_one_port = free_ports(4)
        # `mlflow models serve` runs `uvicorn` by name: this interpreter's bin goes first on PATH.
        bin_dir = str(Path(sys.executable).parent)
        base_env = {
            **os.environ,
            "TRAINYARD_PIPELINES_DIR": str(pipelines),
            "TRAINYARD_SERVING_LOG_SPILL_DIR": str(state / "spill"),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }
        webhook_secret = "benchmark-webhook-secret"
        commands = {
            "ours": (
                [sys.executable, "-m", "trainyard", "serve", "--port", str(ours_port)],
                {
                    "TRAINYARD_SERVING_WEBHOOK_URL": f"http://127.0.0.1:{ours_port}/webhooks/mlflow",
                    "TRAINYARD_SERVING_WEBHOOK_SECRET": webhook_secret,
                },
            ),
            "ours_polling_only": (
                [sys.executable, "-m", "trainyard", "serve", "--port", str(polling_port)],
                {},
            ),
            "mlflow_models_serve": (
                [
                    sys.executable, "-m", "mlflow", "models", "serve",
                    "-m", f"models:/{PIPELINE}@champion", "--env-manager", "local",
                    "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                ],
                {},
            ),
        }  # fmt: skip
        if args.mlflow_one_thread:
            reference, _ = commands["mlflow_models_serve"]
            port_at = reference.index("--port") + 1
            one_thread = [*reference[:port_at], str(mlflow_one_port), *reference[port_at + 1 :]]
            commands["mlflow_models_serve_omp1"] = (one_thread, {"OMP_NUM_THREADS": "1"})
        for name, (command, env) in commands.items():
            with (logs / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(
                    command, env={**base_env, **env}, stdout=log, stderr=subprocess.STDOUT
                )
        wait_ok(f"http://127.0.0.1:{ours_port}/ready")
        wait_ok(f"http://127.0.0.1:{polling_port}/ready")
        wait_ok(f"http://127.0.0.1:{mlflow_port}/ping")
        if args.mlflow_one_thread:
            wait_ok(f"http://127.0.0.1:{mlflow_one_port}/ping")
        import httpx

        # Whether our model runs compiled (trainyard.serving.compiled): part of what is measured.
        ours_models = httpx.get(f"http://127.0.0.1:{ours_port}/models", timeout=10).json()
        print(f"servers ready; ours serves {ours_models['models']}", flush=True)

        load = {
            "ours": run_load(
                "trainyard serve",
                f"http://127.0.0.1:{ours_port}/predict/{PIPELINE}",
                processes["ours"].pid,
                args,
                metrics_url=f"http://127.0.0.1:{ours_port}/metrics",
            ),
            "mlflow_models_serve": run_load(
                "mlflow models serve",
                f"http://127.0.0.1:{mlflow_port}/invocations",
                processes["mlflow_models_serve"].pid,
                args,
            ),
        }
        if args.mlflow_one_thread:
            load["mlflow_models_serve_omp1"] = run_load(
                "mlflow serve, 1 thread",
                f"http://127.0.0.1:{mlflow_one_port}/invocations",
                processes["mlflow_models_serve_omp1"].pid,
                args,
            )
        follow = follow_times(
            {
                "webhook": f"http://127.0.0.1:{ours_port}",
                "polling_10s": f"http://127.0.0.1:{polling_port}",
            },
            (v1, v2),
            args.moves,
        )
        print(f"alias move -> served (s): {follow}", flush=True)
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.down()
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)

    ratios = {}
    for phase, ours in load["ours"].items():
        reference = load["mlflow_models_serve"][phase]
        if "p95_ms" in ours and "p95_ms" in reference:
            ratios[phase] = {
                "p50": round(ours["p50_ms"] / reference["p50_ms"], 2),
                "p95": round(ours["p95_ms"] / reference["p95_ms"], 2),
            }
    top = load["ours"].get(f"single_row_{max(args.rates)}_rps", {})
    summary = {
        "goal": "p95 <= 20 ms at 200 rps; not slower than mlflow models serve",
        "load": load,
        "ratio_ours_to_mlflow": ratios,
        "p95_goal_met": top.get("p95_ms", float("inf")) <= 20 and not top.get("errors"),
        "alias_move_to_served_s": follow,
        "ours_models": ours_models["models"],
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "settings": vars(args),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "serving_latency.json"
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({"ratio_ours_to_mlflow": ratios, "alias": follow}, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
