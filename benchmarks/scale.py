"""Benchmark: the training steps at 1M, 3M and 10M rows, a minimal script, and the SQL source.

``steps`` (default): one SeaweedFS + MLflow server (free ports, temporary state). For each size,
28 daily Parquet partitions of churn rows with 8 extra numeric columns (21 columns) are landed,
then the training steps run as the Airflow tasks run them, each in its own process (``trainyard
ingest``, ``validate``, ``train``, ``evaluate``, ``register``, chained through their JSON):
wall time and peak RSS of each. ``--reference`` also runs, on the same partitions, a minimal
one-process script that only reads the Parquet, splits, fits the same scikit-learn pipeline and
scores the holdout: the physical limit the steps are compared with.

``sql``: a PostgreSQL database (created and dropped here, at TRAINYARD_POSTGRES_URL) holding
``--rows`` churn rows; trainyard's SQL source (a windowed query, chunks, checks and
normalisation, written to a local snapshot file) against ``pandas.read_sql`` of the same query
in one go, each in its own process: wall time and peak RSS.

The 1-minute load average is recorded before and after each measurement: the machine is shared.

Usage:
    python benchmarks/scale.py steps --rows 1000000 --rows 3000000 [--reference]
        [--max-training-rows N] [--profile] [--until STEP]
    python benchmarks/scale.py sql --rows 1000000
Writes benchmarks/results/scale_<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WINDOW_END = date(2026, 6, 30)
DAYS = 28
EXTRA = [f"signal_{i}" for i in range(8)]
STEPS = ("ingest", "validate", "train", "evaluate", "register")


def load() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 1)


class Peak:
    """Peak RSS of a process and its children, sampled in a background thread."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for process in [self.root, *self.root.children(recursive=True)]:
                    total += process.memory_info().rss
            except psutil.Error:
                pass
            self.peak = max(self.peak, total)
            time.sleep(0.1)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(command: list[str], env: dict[str, str], stdout: Path | None = None) -> dict:
    """Run a command; its wall time, peak RSS and the load average around it."""
    before = load()
    start = time.perf_counter()
    with open(stdout or os.devnull, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE)
        with Peak(process.pid) as peak:
            _, err = process.communicate()
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{err.decode()[-3000:]}")
    return {
        "wall_s": round(elapsed, 1),
        "peak_rss_mb": round(peak.peak / 2**20),
        "load_before": before,
        "load_after": load(),
    }


def scale_spec(name: str, prefix: str, max_training_rows: int | None) -> dict:
    """The shipped churn spec with the extra columns, unscheduled, on its own prefix."""
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data.update(name=name, schedule=None)
    data["source"]["prefix"] = prefix
    data["schema"]["numeric_features"] += EXTRA
    data["model"]["registered_name"] = name
    if max_training_rows:
        data["model"]["max_training_rows"] = max_training_rows
    return data


def land(settings: Any, prefix: str, rows: int) -> None:
    """28 daily partitions of churn rows with the extra columns (deterministic)."""
    import numpy as np

    from trainyard.core import storage
    from trainyard_dev.churn import generate_day

    storage.ensure_buckets(settings, [settings.raw_bucket])
    per_day = rows // DAYS
    for i in range(DAYS):
        day = WINDOW_END - timedelta(days=DAYS - 1 - i)
        frame = generate_day(day, per_day + (rows % DAYS if i == DAYS - 1 else 0))
        rng = np.random.default_rng(i)
        for column in EXTRA:
            frame[column] = rng.normal(size=len(frame)).round(4)
        uri = f"s3://{settings.raw_bucket}/{prefix}/date={day:%Y-%m-%d}/part-0000.parquet"
        storage.put_bytes(settings, uri, storage.parquet_bytes(frame))


MINIMAL = """
import io, json, sys, time
started = time.perf_counter()
import pyarrow.parquet as pq, pandas as pd
from trainyard.core import storage
from trainyard.core.settings import Settings
from trainyard.core.spec import load_spec
from trainyard.training import modeling
from trainyard.core.metrics import compute_metrics
phases = {"import": time.perf_counter() - started}
settings = Settings.from_env()
spec = load_spec(settings.pipelines_dir / (sys.argv[1] + ".yaml"))
mark = time.perf_counter()
keys = storage.list_keys(settings, settings.raw_bucket, spec.source.prefix + "/")
frame = pd.concat([pq.read_table(io.BytesIO(storage.get_bytes(
    settings, f"s3://{settings.raw_bucket}/{k}"))).to_pandas() for k in keys], ignore_index=True)
phases["read"] = time.perf_counter() - mark
mark = time.perf_counter()
data = modeling.split(spec, frame)
phases["split"] = time.perf_counter() - mark
model = modeling.build_pipeline(spec)
mark = time.perf_counter()
model.fit(data.x_train, data.y_train)
phases["fit"] = time.perf_counter() - mark
mark = time.perf_counter()
metrics = compute_metrics(spec.metrics, model, data.x_test, data.y_test)
phases["score"] = time.perf_counter() - mark
print(json.dumps({"metrics": metrics, "phases_s": {k: round(v, 1) for k, v in phases.items()}}))
"""


def run_steps(
    env: dict[str, str], name: str, work: Path, profile: bool = False, until: str = STEPS[-1]
) -> dict:
    """Each training step in its own process, chained through JSON files, up to ``until``.

    With ``profile``, each step runs under cProfile and writes ``<step>.prof`` next to its JSON
    (read them with ``python -m pstats``); the wall times then include the profiler's cost.
    """
    trainyard = [str(Path(sys.executable).parent / "trainyard")]
    window = ["--window-end", WINDOW_END.isoformat(), "--window-days", str(DAYS)]
    inputs = {
        "ingest": window,
        "validate": ["--snapshot", "ingest.json"],
        "train": ["--snapshot", "ingest.json", "--validation", "validate.json"],
        "evaluate": ["--snapshot", "ingest.json", "--training", "train.json"],
        "register": ["--snapshot", "ingest.json", "--validation", "validate.json",
                     "--training", "train.json", "--decision", "evaluate.json"],
    }  # fmt: skip
    results = {}
    for step in STEPS[: STEPS.index(until) + 1]:
        if profile:
            profiled = ["-m", "cProfile", "-o", str(work / f"{step}.prof"), "-m", "trainyard"]
            trainyard = [sys.executable, *profiled]
        command = [*trainyard, step, name, *[str(work / a) if a.endswith(".json") else a
                                             for a in inputs[step]]]  # fmt: skip
        results[step] = measure(command, env, work / f"{step}.json")
        if profile and not (work / f"{step}.json").read_text().strip():
            # cProfile swallows the CLI's exit code: a failed step leaves its JSON empty.
            raise RuntimeError(f"{step} failed under the profiler (no result); run it without")
        print(f"  {step}: {results[step]}", flush=True)
    return results


def steps_mode(args: argparse.Namespace) -> dict:
    from trainyard.core.settings import Settings
    from trainyard_dev.devstack import Stack
    from trainyard_dev.services import Ports

    state = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"state and step outputs in {state}", flush=True)
    specs = state / "pipelines"
    specs.mkdir()
    stack = Stack(state_dir=state / "stack", ports=Ports.free())
    report: dict[str, Any] = {"sizes": {}}
    try:
        stack.up(airflow=False)
        env = {**os.environ, **stack.client_env(), "TRAINYARD_PIPELINES_DIR": str(specs)}
        os.environ.update(env)
        for rows in args.rows:
            name = f"scale_{rows}"
            spec = scale_spec(name, name, args.max_training_rows)
            (specs / f"{name}.yaml").write_text(yaml.safe_dump(spec))
            land(Settings.from_env(), name, rows)
            print(f"{rows:,} rows x {13 + len(EXTRA)} columns landed", flush=True)
            work = state / name
            work.mkdir()
            result: dict[str, Any] = {"steps": run_steps(env, name, work, args.profile, args.until)}
            result["steps_total_s"] = round(sum(s["wall_s"] for s in result["steps"].values()), 1)
            result["largest_step_rss_mb"] = max(s["peak_rss_mb"] for s in result["steps"].values())
            if args.reference:
                script = work / "minimal.py"
                script.write_text(textwrap.dedent(MINIMAL))
                output = work / "minimal.json"
                result["minimal_script"] = measure([sys.executable, str(script), name], env, output)
                result["minimal_script"].update(json.loads(output.read_text()))
                result["ratio_steps_to_minimal"] = round(
                    result["steps_total_s"] / result["minimal_script"]["wall_s"], 2
                )
                print(f"  minimal script: {result['minimal_script']}", flush=True)
            report["sizes"][rows] = result
            print(json.dumps(result), flush=True)
    finally:
        stack.down()
    return report


SQL_READERS = {
    "trainyard": """
import sys, tempfile
from datetime import date
from pathlib import Path
from trainyard.core.spec import parse_spec
from trainyard.data.snapshots import SnapshotWriter, TrainingWindow
from trainyard.data.sources import read_window
import yaml
spec = parse_spec(yaml.safe_load(open(sys.argv[1])), Path("churn_sql.yaml"))
with tempfile.TemporaryDirectory() as directory:
    writer = SnapshotWriter(Path(directory))
    read_window(spec, None, TrainingWindow(start=date(2026, 6, 3), end=date(2026, 6, 30)), writer)
    print(writer.rows, writer.close())
""",
    "pandas.read_sql": """
import os, sys
from datetime import datetime
import pandas as pd, sqlalchemy as sa, yaml
query = yaml.safe_load(open(sys.argv[1]))["source"]["query"]
engine = sa.create_engine(os.environ["BENCH_SQL_URL"])
frame = pd.read_sql(sa.text(query), engine, params={
    "window_start": datetime(2026, 6, 3), "window_end": datetime(2026, 7, 1)})
print(len(frame))
""",
}


def sql_mode(args: argparse.Namespace) -> dict:
    import sqlalchemy as sa

    rows = args.rows[0]
    server_url = os.environ.get(
        "TRAINYARD_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    database = f"bench_sql_{uuid.uuid4().hex[:8]}"
    with server.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    url = sa.engine.make_url(server_url).set(database=database)
    work = Path(tempfile.mkdtemp(prefix="bench-sql-"))
    try:
        engine = sa.create_engine(url)
        _fill_table(engine, rows)
        engine.dispose()
        spec = yaml.safe_load((REPO / "docs" / "examples" / "pipelines" / "churn_sql.yaml")
                              .read_text())  # fmt: skip
        spec["source"]["url_env"] = "BENCH_SQL_URL"
        (work / "spec.yaml").write_text(yaml.safe_dump(spec))
        env = {**os.environ, "BENCH_SQL_URL": url.render_as_string(hide_password=False)}
        report: dict[str, Any] = {"rows": rows}
        for reader, code in SQL_READERS.items():
            script = work / f"read_with_{reader.replace('.', '_')}.py"
            script.write_text(textwrap.dedent(code))
            report[reader] = measure([sys.executable, str(script), str(work / "spec.yaml")], env)
            print(f"{reader}: {report[reader]}", flush=True)
        for ratio, key in (("ratio", "wall_s"), ("rss_ratio", "peak_rss_mb")):
            report[ratio] = round(report["trainyard"][key] / report["pandas.read_sql"][key], 2)
        return report
    finally:
        with server.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        server.dispose()


def _fill_table(engine: Any, rows: int) -> None:
    """``customer_events`` with ``rows`` churn rows over 28 days, loaded with COPY."""
    import io

    import numpy as np

    from trainyard_dev.churn import generate_day

    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE customer_events (customer_id text, event_time timestamp, "
            "tenure_months integer, monthly_charges double precision, total_charges double "
            "precision, support_calls integer, data_usage_gb double precision, "
            "days_since_last_login double precision, contract text, payment_method text, "
            "internet_service text, region text, churned integer)"
        )
    per_day = rows // DAYS
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for i in range(DAYS):
            day = WINDOW_END - timedelta(days=DAYS - 1 - i)
            frame = generate_day(day, per_day).rename(columns={"event_date": "event_time"})
            frame["event_time"] = frame["event_time"] + pd_seconds(np.arange(len(frame)) % 86400)
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, header=False)
            statement = "COPY customer_events FROM STDIN WITH (FORMAT csv)"
            if hasattr(cursor, "copy_expert"):  # psycopg2
                buffer.seek(0)
                cursor.copy_expert(statement, buffer)
            else:  # psycopg 3 (SQLAlchemy 2.1's default PostgreSQL driver)
                with cursor.copy(statement) as copy:
                    copy.write(buffer.getvalue())
        raw.commit()
    finally:
        raw.close()


def pd_seconds(values: Any) -> Any:
    import pandas as pd

    return pd.to_timedelta(values, unit="s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["steps", "sql"])
    parser.add_argument("--rows", type=int, action="append", required=True)
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--max-training-rows", type=int)
    parser.add_argument("--profile", action="store_true", help="each step under cProfile")
    parser.add_argument(
        "--until", choices=STEPS, default=STEPS[-1], help="stop after this step (e.g. validate)"
    )
    args = parser.parse_args()
    report = steps_mode(args) if args.mode == "steps" else sql_mode(args)
    report["cores"] = os.cpu_count()
    RESULTS.mkdir(exist_ok=True)
    sizes = "_".join(str(r) for r in args.rows)
    (RESULTS / f"scale_{args.mode}_{sizes}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
