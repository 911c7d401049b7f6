"""Benchmark (b): the training DAG on a 1M-row window vs the same steps in one CLI process, and
vs the physical limit (a minimal one-process script).

One SeaweedFS + MLflow server (free ports, temporary state) holds 28 daily churn partitions of
~35.7k rows (1,000,020 rows). Then, on a machine otherwise idle:

0. with ``--reference``: the minimal script of ``benchmarks/scale.py`` (read the Parquet, split,
   fit the same scikit-learn pipeline, score the holdout; nothing else) on the same partitions,
   wall time and its phases;
1. CLI (unless ``--no-cli``): ``trainyard run churn`` in one process (ingest, validate, train,
   evaluate, register), wall time and peak RSS of that process;
2. Airflow: ``airflow standalone`` (LocalExecutor) is started, ``train_churn`` is triggered
   through the REST API, and the run's wall time (run start to run end, as Airflow records it)
   and the trigger-to-end time are taken; memory is sampled over the Airflow process tree:
   the largest single process (the task that trains) and the tree's peak above its idle level.

Each side writes to its own artifacts bucket and registers its own model, so both do the full
work (no snapshot, validation or version is reused). The 1-minute load average is recorded
before and after the minimal script and the Airflow run (the machine may be shared).
Goals: Airflow wall time <= 1.5x the CLI, and <= 1.3x the minimal script (issue 12's
"overhead against the physical limit").

Usage: python benchmarks/training_wall_time.py [--rows-per-day N] [--days N] [--reference]
    [--no-cli] [--omp-threads N] [--profile FILE]
Writes benchmarks/results/training_wall_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WINDOW_END = date(2026, 6, 30)


class TreeMemory:
    """Samples RSS of a process and all its descendants in a background thread."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int]:
        """Current (total, largest single) RSS in bytes."""
        total = largest = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            largest = max(largest, rss)
        return total, largest

    def _run(self) -> None:
        while not self._stop.is_set():
            total, largest = self.sample()
            self.peak_total = max(self.peak_total, total)
            self.peak_single = max(self.peak_single, largest)
            time.sleep(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_pipelines(directory: Path, registered_name: str) -> None:
    """The shipped churn spec, unscheduled (no run on unpause), registering ``registered_name``."""
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["schedule"] = None
    data["model"]["registered_name"] = registered_name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "churn.yaml").write_text(yaml.safe_dump(data))


def run_cli(env: dict[str, str]) -> dict:
    """``trainyard run churn`` in a subprocess: wall time and peak RSS."""
    command = [
        str(Path(sys.executable).parent / "trainyard"),
        "run",
        "churn",
        "--window-end",
        WINDOW_END.isoformat(),
        "--reason",
        "benchmark",
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with TreeMemory(process.pid) as memory:
        output, _ = process.communicate()
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"CLI run failed:\n{output.decode()[-3000:]}")
    return {"wall_s": elapsed, "peak_rss_mb": memory.peak_single / 2**20}


def run_minimal(env: dict[str, str]) -> dict:
    """The minimal script of ``benchmarks/scale.py`` on the churn partitions: wall, phases, RSS."""
    sys.path.insert(0, str(Path(__file__).parent))
    from scale import MINIMAL, measure

    with tempfile.TemporaryDirectory(prefix="bench-minimal-") as directory:
        script, output = Path(directory) / "minimal.py", Path(directory) / "minimal.json"
        script.write_text(MINIMAL)
        result = measure([sys.executable, str(script), "churn"], env, output)
        return {**result, **json.loads(output.read_text())}


def task_timeline(tasks: list[dict], run_start: datetime) -> dict:
    """Each task's queued/start/end (seconds from the run's start) and the gaps between tasks.

    A gap is the time from the end of the task(s) a task waits for (the latest end before its
    start) to its start: the scheduler noticing the end, queueing the next task and the
    executor's worker starting its process.
    """
    done = sorted(
        (t for t in tasks if t["start_date"] and t["end_date"]), key=lambda t: t["start_date"]
    )

    def at(moment: str | None) -> float | None:
        if moment is None:
            return None
        return round((datetime.fromisoformat(moment) - run_start).total_seconds(), 2)

    timeline = {
        t["task_id"]: {
            "queued": at(t.get("queued_when")),
            "start": at(t["start_date"]),
            "end": at(t["end_date"]),
        }
        for t in done
    }
    gaps = {}
    for task_id, times in timeline.items():
        ends = [o["end"] for o in timeline.values() if o["end"] <= times["start"]]
        gaps[task_id] = round(times["start"] - max(ends, default=0.0), 2)
    return {"tasks": timeline, "gaps_s": gaps, "gaps_total_s": round(sum(gaps.values()), 2)}


def profiled(pid: int, output: Path) -> subprocess.Popen:
    """py-spy sampling a process tree (every task process forked below it) into ``output``.

    Collapsed stacks (idle ones too: waits on S3 and MLflow count), one line per stack, its
    first frames the processes (pid and title) down to the sampled one; a task's process is
    titled by its task instance id. py-spy must be on PATH.
    """
    command = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--rate", "50", "--idle"]
    command += ["--format", "raw", "--output", str(output), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def run_airflow(stack, env_dir: Path, profile: Path | None = None) -> dict:
    """Trigger train_churn under airflow standalone and measure it (``profile``: py-spy's
    collapsed stacks of the whole Airflow tree during the run go there)."""
    from trainyard_dev.demo import api_for

    api = api_for(stack)
    api.wait_for_dag("train_churn")
    api.set_paused("train_churn", False)
    time.sleep(5)  # let the scheduler settle after unpausing
    spy = profiled(stack.running_pid("airflow"), profile) if profile else None
    with TreeMemory(stack.running_pid("airflow")) as memory:
        idle_total, _ = memory.sample()
        load_before = round(os.getloadavg()[0], 1)
        triggered = time.perf_counter()
        run = api.trigger("train_churn", conf={"window_end": WINDOW_END.isoformat()})
        finished = api.wait_for_run("train_churn", run["dag_run_id"], timeout=3600)
        trigger_to_end = time.perf_counter() - triggered
        load_after = round(os.getloadavg()[0], 1)
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(timeout=120)
    if finished["state"] != "success":
        states = api.task_states("train_churn", run["dag_run_id"])
        raise RuntimeError(f"Airflow run {finished['state']}: {states}")
    started = datetime.fromisoformat(finished["start_date"])
    ended = datetime.fromisoformat(finished["end_date"])
    tasks = api.request(
        "GET", f"/api/v2/dags/train_churn/dagRuns/{run['dag_run_id']}/taskInstances"
    )["task_instances"]
    return {
        "wall_s": (ended - started).total_seconds(),
        "trigger_to_end_s": trigger_to_end,
        "task_durations_s": {t["task_id"]: t["duration"] for t in tasks},
        "timeline": task_timeline(tasks, started),
        "peak_task_rss_mb": memory.peak_single / 2**20,
        "tree_idle_rss_mb": idle_total / 2**20,
        "tree_peak_rss_mb": memory.peak_total / 2**20,
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=35_715)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--reference", action="store_true", help="run the minimal script too")
    parser.add_argument("--no-cli", action="store_true", help="skip the one-process CLI run")
    parser.add_argument(
        "--omp-threads",
        type=int,
        help="OMP_NUM_THREADS for every side (the fit's OpenMP threads spin-wait on a busy host: "
        "fit times then vary several-fold between runs; 1 makes the sides comparable there)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="write py-spy's collapsed stacks of the Airflow run here (py-spy on PATH; the "
        "sampling slows the run, so take times from a run without it)",
    )
    args = parser.parse_args()

    from trainyard.core.settings import Settings
    from trainyard_dev.churn import land_days
    from trainyard_dev.devstack import Stack
    from trainyard_dev.services import Ports

    state = Path(tempfile.mkdtemp(prefix="bench-training-"))
    cli_specs, airflow_specs = state / "pipelines-cli", state / "pipelines-airflow"
    write_pipelines(cli_specs, "churn_bench_cli")
    write_pipelines(airflow_specs, "churn_bench_airflow")
    stack = Stack(
        state_dir=state / "stack",
        ports=Ports.free(),
        extra_env={
            "TRAINYARD_PIPELINES_DIR": str(airflow_specs),
            "TRAINYARD_ARTIFACTS_BUCKET": "bench-airflow",
            **({"OMP_NUM_THREADS": str(args.omp_threads)} if args.omp_threads else {}),
        },
    )
    try:
        stack.up(airflow=False)
        env = {**os.environ, **stack.client_env()}
        os.environ.update(env)
        start = WINDOW_END - timedelta(days=args.days - 1)
        land_days(Settings.from_env(), start, WINDOW_END, args.rows_per_day)
        rows = args.rows_per_day * args.days
        print(f"landed {rows:,} rows in {args.days} partitions", flush=True)

        report: dict = {"rows": rows, "omp_threads": args.omp_threads}
        if args.reference:
            report["minimal"] = run_minimal({**env, "TRAINYARD_PIPELINES_DIR": str(cli_specs)})
            print(f"minimal script: {report['minimal']}", flush=True)
        if not args.no_cli:
            cli_env = {
                **env,
                "TRAINYARD_PIPELINES_DIR": str(cli_specs),
                "TRAINYARD_ARTIFACTS_BUCKET": "bench-cli",
            }
            report["cli"] = cli = run_cli(cli_env)
            print(f"CLI: {cli['wall_s']:.1f} s, peak RSS {cli['peak_rss_mb']:.0f} MB", flush=True)

        stack.start_airflow()
        report["airflow"] = airflow = run_airflow(stack, airflow_specs, args.profile)
        print(
            f"Airflow: run {airflow['wall_s']:.1f} s "
            f"(trigger to end {airflow['trigger_to_end_s']:.1f} s), "
            f"largest task RSS {airflow['peak_task_rss_mb']:.0f} MB, tree "
            f"{airflow['tree_idle_rss_mb']:.0f} -> {airflow['tree_peak_rss_mb']:.0f} MB, "
            f"1-minute load {airflow['load_before']} -> {airflow['load_after']}",
            flush=True,
        )
        print(f"Airflow tasks: {airflow['task_durations_s']}", flush=True)
        print(
            f"between tasks: {airflow['timeline']['gaps_s']} "
            f"(total {airflow['timeline']['gaps_total_s']} s)",
            flush=True,
        )
        if "cli" in report:
            report["ratio"] = airflow["wall_s"] / report["cli"]["wall_s"]
            print(f"ratio Airflow/CLI: {report['ratio']:.2f} (goal <= 1.5)")
        if "minimal" in report:
            report["ratio_to_minimal"] = airflow["wall_s"] / report["minimal"]["wall_s"]
            print(f"ratio Airflow/minimal script: {report['ratio_to_minimal']:.2f} (goal <= 1.3)")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "training_wall_time.json").write_text(json.dumps(report, indent=2))
    finally:
        stack.down()


if __name__ == "__main__":
    main()
